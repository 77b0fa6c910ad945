"""Load test of `infinitygan serve` on loopback (issue 10): bounded in requests and in time.

Starts the server (the bundled model unless --model) on 127.0.0.1 in a child process, then:

1. normal load: ``--clients`` concurrent clients (default 16) fetch ``--requests`` tiles in all
   (default 1,000), each client panning along its own stretch of the image (every request is
   a render, no cache hits), with the server's default queue. Counts failures (anything but
   200), p50/p99 latency and tiles per second; the server's /api/stats tell how many tiles
   shared each forward.
2. deliberate overload: a second server with ``--max-queue 4`` and 4x the clients; 503 answers
   (with Retry-After) are counted separately from failures.

Usage:

    python benchmarks/serve_load.py [--model M] [--clients 16] [--requests 1000] [--time-limit 900]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str | None, max_queue: int, device: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "infinitygan", "serve", "--port", str(port), "--quiet", "--device", device,
           "--max-queue", str(max_queue)]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-500:]}")
        try:
            httpx.get(base + "/api/info", timeout=2).raise_for_status()
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


async def run_clients(base: str, clients: int, requests: int, rows: list[int], time_limit: float,
                      seed: int) -> dict:
    per = [requests // clients + (1 if c < requests % clients else 0) for c in range(clients)]
    lat, status = [], {}
    t_end = time.monotonic() + time_limit

    async def client(c: int):
        async with httpx.AsyncClient(base_url=base, timeout=max(1.0, t_end - time.monotonic())) as http:
            for i in range(per[c]):
                if time.monotonic() > t_end:
                    status["not sent (time limit)"] = status.get("not sent (time limit)", 0) + per[c] - i
                    return
                # each client pans right along its own stretch of the image, row by row
                x, y = c * 100_000 + i // len(rows), rows[i % len(rows)]
                t0 = time.perf_counter()
                try:
                    r = await http.get(f"/tiles/{seed}/0/{x}/{y}.png")
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                status[code] = status.get(code, 0) + 1
                if code == 200:
                    lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    ok = status.get(200, 0)
    failed = sum(v for k, v in status.items() if k not in (200, 503))
    return {"clients": clients, "requests": requests, "ok": ok, "failed": failed, "503": status.get(503, 0),
            "status": {str(k): v for k, v in status.items()}, "seconds": round(wall, 1),
            "tiles_per_second": round(ok / wall, 2), "p50_ms": round(1000 * percentile(lat, 50), 1),
            "p99_ms": round(1000 * percentile(lat, 99), 1)}


def phase(model, max_queue, device, clients, requests, time_limit, seed) -> dict:
    proc, base = start_server(model, max_queue, device)
    try:
        info = httpx.get(base + "/api/info").json()
        rows = list(range(-info["band"] // info["tile"], info["band"] // info["tile"]))
        res = asyncio.run(run_clients(base, clients, requests, rows, time_limit, seed))
        stats = httpx.get(base + "/api/stats").json()
        res["server"] = stats
        res["tiles_per_forward"] = round(stats["rendered"] / max(1, stats["forwards"]), 2)
        res["max_queue"] = max_queue
        return res
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--overload-requests", type=int, default=400)
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds per phase")
    args = ap.parse_args()
    out = {"cpu_count": os.cpu_count(), "device": args.device}
    out["normal"] = phase(args.model, 64, args.device, args.clients, args.requests, args.time_limit, 11)
    out["overload"] = phase(args.model, 4, args.device, 4 * args.clients, args.overload_requests, args.time_limit, 12)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
