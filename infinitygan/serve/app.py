"""The tile server: a Starlette app over a ``TileRenderer``.

Routes:

* ``GET /tiles/{seed}/{z}/{x}/{y}.{png|webp|jpg}[?scene=ID]``: a map tile (see ``tiles.py``).
  Strong ETag, ``Cache-Control: public, max-age=31536000, immutable``; ``If-None-Match`` -> 304.
  Bad seed / coordinates -> 400, tiles outside the map -> 404, full queue -> 503 with
  ``Retry-After``; every error body is a short JSON ``{"error": ...}``.
* ``GET /api/info``: the map's parameters (tile size, zoom levels, band, ranges) as JSON.
* ``GET /api/stats``: counters (renders, forwards, cache, queue, drops).
* ``GET /``: the explorer page (Leaflet, shipped in ``static/``).

Load handling. Tiles come from an in-memory LRU (bytes, bounded in size) or are rendered by
one worker: requests for missing tiles become jobs in a bounded FIFO (a full FIFO answers 503
at once, so memory and latency stay bounded), identical requests share one job, and each time
the worker is free it takes the oldest job plus every queued job of the same (seed, zoom,
scene) up to ``batch_tiles`` native-tile equivalents, and renders them in shared GT forwards
in a worker thread (the event loop stays free to accept, answer from cache and queue). A
request whose client disconnects leaves its job; a job nobody waits for any more is removed
from the FIFO before it is rendered.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .tiles import FORMATS, SEED_LIMIT, TILE_PX, X_LIMIT, TileKey, TileRenderer, encode

STATIC = Path(__file__).parent / "static"
CACHE_CONTROL = "public, max-age=31536000, immutable"
_INT = re.compile(r"-?[0-9]{1,20}")  # ASCII digits only
_SCENE = re.compile(r"[0-9a-f]{1,64}")


logger = logging.getLogger("infinitygan.serve")


class QueueFull(Exception):
    pass


class RenderFailed(Exception):
    """A render raised (its details go to the server's log, never into a response)."""


class ClientGone(Exception):
    pass


class LRUBytes:
    """An LRU cache of byte strings bounded by their total size."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.size = 0
        self.hits = self.misses = 0
        self._d: OrderedDict = OrderedDict()

    def get(self, k):
        v = self._d.get(k)
        if v is None:
            self.misses += 1
            return None
        self.hits += 1
        self._d.move_to_end(k)
        return v

    def put(self, k, v: bytes) -> None:
        if len(v) > self.max_bytes:
            return
        old = self._d.pop(k, None)
        if old is not None:
            self.size -= len(old)
        self._d[k] = v
        self.size += len(v)
        while self.size > self.max_bytes:
            _, dropped = self._d.popitem(last=False)
            self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._d)


@dataclass(eq=False)
class Job:
    key: TileKey
    fmt: str
    future: asyncio.Future
    scene: dict | None = None  # the scene's definition, taken when the request was accepted
    waiters: int = 0
    created: float = field(default_factory=time.monotonic)

    @property
    def cost(self) -> int:
        return 4 ** self.key.z


class TileService:
    """Cache + bounded render queue + batching worker around a renderer."""

    def __init__(self, renderer: TileRenderer, cache_bytes: int = 256 << 20, max_queue: int = 64,
                 batch_tiles: int = 16):
        self.renderer = renderer
        self.cache = LRUBytes(cache_bytes)
        self.max_queue = int(max_queue)
        self.batch_tiles = int(batch_tiles)
        self._pending: OrderedDict[tuple, Job] = OrderedDict()  # queued, not yet rendering
        self._jobs: dict[tuple, Job] = {}  # queued or rendering
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-render")
        self.stats = {"rendered": 0, "batches": 0, "rejected_503": 0, "dropped": 0, "errors": 0}

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    # ---- requests ------------------------------------------------------------------------
    async def fetch(self, key: TileKey, fmt: str, disconnected, scene: dict | None = None) -> bytes:
        """The tile's bytes; raises QueueFull or ClientGone. ``disconnected``: a callable returning
        an awaitable that completes when the client goes away (asked for only when waiting).
        ``scene``: the definition of ``key.scene`` (rendered even if the store evicts it meanwhile)."""
        k = (key, fmt)
        data = self.cache.get(k)
        if data is not None:
            return data
        job = self._jobs.get(k)
        if job is None:
            if len(self._pending) >= self.max_queue:
                self.stats["rejected_503"] += 1
                raise QueueFull
            job = Job(key, fmt, asyncio.get_running_loop().create_future(), scene)
            self._jobs[k] = job
            self._pending[k] = job
            self._wake.set()
        job.waiters += 1
        gone = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
            if job.future.done():
                return job.future.result()
            raise ClientGone
        finally:
            gone.cancel()
            job.waiters -= 1
            if job.waiters == 0 and self._pending.get(k) is job:
                del self._pending[k]
                del self._jobs[k]
                self.stats["dropped"] += 1

    def _take(self) -> list[Job]:
        """The oldest job and queued jobs of its group, up to batch_tiles native-tile costs."""
        first = next(iter(self._pending.values()))
        group, budget = first.key.group, max(self.batch_tiles, first.cost)
        taken, cost = [], 0
        for k, job in list(self._pending.items()):
            if job.key.group == group and cost + job.cost <= budget:
                taken.append(job)
                cost += job.cost
                del self._pending[k]
        return taken

    def _render_encode(self, jobs: list[tuple[TileKey, str]], scenes: dict | None = None) -> list[bytes]:
        imgs = self.renderer.render([k for k, _ in jobs], scenes)
        return [encode(img, fmt) for img, (_, fmt) in zip(imgs, jobs)]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                jobs = self._take()
                scenes = {(j.key.seed, j.key.scene): j.scene for j in jobs if j.scene is not None}
                try:
                    results = await loop.run_in_executor(self._pool, self._render_encode,
                                                         [(j.key, j.fmt) for j in jobs], scenes)
                except Exception:  # a render failure answers 500 to its requests, not a crash
                    self.stats["errors"] += 1
                    logger.exception("render of %d tile(s) failed", len(jobs))  # details in the log only
                    for j in jobs:
                        self._jobs.pop((j.key, j.fmt), None)
                        if not j.future.done():
                            j.future.set_exception(RenderFailed())
                    continue
                self.stats["batches"] += 1
                for j, data in zip(jobs, results):
                    self.cache.put((j.key, j.fmt), data)
                    self._jobs.pop((j.key, j.fmt), None)
                    self.stats["rendered"] += 1
                    if not j.future.done():
                        j.future.set_result(data)

    def snapshot(self) -> dict:
        return {**self.stats, "queued": len(self._pending), "cache_tiles": len(self.cache),
                "cache_bytes": self.cache.size, "cache_hits": self.cache.hits, "cache_misses": self.cache.misses,
                "forwards": self.renderer.forwards}


# ================================================================================ the app
def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _wait_disconnect(request: Request) -> None:
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def create_app(renderer: TileRenderer, cache_mb: float = 256, max_queue: int = 64, batch_tiles: int = 16,
               scene_store=None) -> Starlette:
    """The Starlette app serving ``renderer``'s tiles and the explorer page.

    scene_store: optional object with ``post(seed, json) -> id`` and ``tools`` for scene editing
    (style fusion); without it the page shows no scene tools.
    """
    service = TileService(renderer, int(cache_mb * 2**20), max_queue, batch_tiles)

    async def tile(request: Request):
        p = request.path_params
        fmt = p["fmt"].lower()
        if fmt not in FORMATS:
            return _error(404, f"unknown tile format {fmt!r} (png, webp, jpg)")
        for name in ("seed", "z", "x", "y"):
            if not _INT.fullmatch(p[name]):
                return _error(400, f"{name} must be an integer")
        seed, z, x, y = (int(p[n]) for n in ("seed", "z", "x", "y"))
        if not 0 <= seed <= SEED_LIMIT:
            return _error(400, f"seed must be in 0..{SEED_LIMIT}")
        scene = request.query_params.get("scene", "")
        definition = None
        if scene:
            definition = scene_store.get(seed, scene) if scene_store is not None and _SCENE.fullmatch(scene) else None
            if definition is None:
                return _error(404, "unknown scene")  # the page registers it again (POST) and retries
        key = TileKey(seed, z, x, y, scene)
        why = renderer.check(key)
        if why:
            return _error(404, why)
        etag = renderer.etag(key, fmt)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        try:
            data = await service.fetch(key, fmt, lambda: _wait_disconnect(request), definition)
        except QueueFull:
            return _error(503, "render queue full, retry shortly", {"Retry-After": "1"})
        except ClientGone:
            return Response(status_code=499)
        except RenderFailed:
            return _error(500, "render failed")
        return Response(data, media_type=FORMATS[fmt][1], headers=headers)

    async def info(request: Request):
        g = renderer.model.config.generator
        return JSONResponse({
            "tile": TILE_PX, "max_zoom": renderer.max_zoom, "band": renderer.band, "x_limit": X_LIMIT,
            "seed_limit": SEED_LIMIT, "formats": sorted(FORMATS), "model": renderer.model.config.name,
            "lattice": 2 ** g.n_up, "device": str(renderer.synth.device), "dtype": str(renderer.synth.dtype),
            "scenes": scene_store is not None,
        })

    async def stats(request: Request):
        return JSONResponse(service.snapshot())

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def not_found(request: Request, exc):
        return _error(getattr(exc, "status_code", 404), getattr(exc, "detail", None) or "not found")

    async def server_error(request: Request, exc):
        return _error(500, "internal error")

    routes = [
        Route("/", index),
        Route("/tiles/{seed}/{z}/{x}/{y}.{fmt}", tile),
        Route("/api/info", info),
        Route("/api/stats", stats),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if scene_store is not None:
        routes += scene_store.routes()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: not_found, 405: not_found, 500: server_error})
    app.state.service = service
    app.state.renderer = renderer
    return app
