"""Scenes on the tile server: style centres and resampled regions placed from the page.

``POST /api/scenes/{seed}`` with a JSON body

    {"centres": [{"seed": 5, "point": [x, y]}, {"seed": 9, "box": [x, y, w, h]}],
     "resample": [{"region": [x, y, w, h], "seed": 42}]}

answers ``{"id": ID}``; tiles of that scene are ``/tiles/{seed}/{z}/{x}/{y}.png?scene=ID``. The id
is a digest of the canonical scene, so the same scene always gets the same id and the same
tile bytes (ETags stay strong), and a page can re-register a scene it keeps in its URL after
the server restarts. Only seeds and integer places are accepted (no files, no raw vectors);
sizes and counts are bounded. Scenes are kept in an LRU of ``max_scenes``.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import UserError
from .tiles import SEED_LIMIT, X_LIMIT

MAX_CENTRES = 16
MAX_RESAMPLE = 16
MAX_BODY = 16384
MAX_SIDE = 4096
_SEED = re.compile(r"[0-9]{1,20}")  # ASCII digits only (str.isdigit accepts any script's digits)


def _int(v, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise UserError(f"{what} must be an integer in {lo}..{hi}")
    return v


def _ints(v, n: int, what: str) -> list:
    if not isinstance(v, list) or len(v) != n:
        raise UserError(f"{what} must be a list of {n} integers")
    return v


def _rect(v, what: str) -> list[int]:
    x, y, w, h = _ints(v, 4, what)
    return [_int(x, f"{what} x", -X_LIMIT, X_LIMIT), _int(y, f"{what} y", -X_LIMIT, X_LIMIT),
            _int(w, f"{what} width", 16, MAX_SIDE), _int(h, f"{what} height", 16, MAX_SIDE)]


def clean_scene(data) -> dict:
    """The canonical scene of untrusted JSON (ValueError / UserError when malformed)."""
    if not isinstance(data, dict) or set(data) - {"centres", "resample"}:
        raise UserError("a scene is {\"centres\": [...], \"resample\": [...]}")
    centres, resample = data.get("centres", []), data.get("resample", [])
    if not isinstance(centres, list) or len(centres) > MAX_CENTRES:
        raise UserError(f"centres must be a list of at most {MAX_CENTRES}")
    if not isinstance(resample, list) or len(resample) > MAX_RESAMPLE:
        raise UserError(f"resample must be a list of at most {MAX_RESAMPLE}")
    out_c, out_r = [], []
    for i, c in enumerate(centres):
        if not isinstance(c, dict) or set(c) not in ({"seed", "point"}, {"seed", "box"}):
            raise UserError(f"centre {i + 1} must be {{seed, point: [x, y]}} or {{seed, box: [x, y, w, h]}}")
        seed = _int(c["seed"], f"centre {i + 1} seed", 0, SEED_LIMIT)
        if "point" in c:
            x, y = _ints(c["point"], 2, f"centre {i + 1} point")
            out_c.append({"seed": seed, "point": [_int(x, "point x", -X_LIMIT, X_LIMIT),
                                                  _int(y, "point y", -X_LIMIT, X_LIMIT)]})
        else:
            out_c.append({"seed": seed, "box": _rect(c["box"], f"centre {i + 1} box")})
    for i, r in enumerate(resample):
        if not isinstance(r, dict) or set(r) != {"seed", "region"}:
            raise UserError(f"resampled region {i + 1} must be {{region: [x, y, w, h], seed}}")
        out_r.append({"region": _rect(r["region"], f"resampled region {i + 1}"),
                      "seed": _int(r["seed"], f"resampled region {i + 1} seed", 0, SEED_LIMIT)})
    return {"centres": out_c, "resample": out_r}


def scene_id(seed: int, scene: dict) -> str:
    text = json.dumps({"seed": seed, **scene}, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class SceneStore:
    """Registered scenes of a server; gives the renderer its scene canvases."""

    def __init__(self, renderer, max_scenes: int = 256):
        self.renderer = renderer
        self.max_scenes = int(max_scenes)
        self._scenes: OrderedDict[tuple[int, str], dict] = OrderedDict()
        renderer.scenes = self.canvas_for

    def post(self, seed: int, data) -> str:
        """Register a scene (untrusted JSON): validated completely now, so every tile of an
        accepted scene renders (overlapping boxes, two styles at one point, overlapping
        resampled regions: UserError)."""
        scene = clean_scene(data)
        sid = scene_id(seed, scene)
        from ..scene.bind import bind_scene

        bind_scene(self.build(seed, scene), self.renderer.synth)  # the style field and fusion, built once
        self._scenes[(seed, sid)] = scene
        self._scenes.move_to_end((seed, sid))
        while len(self._scenes) > self.max_scenes:
            self._scenes.popitem(last=False)
        return sid

    def has(self, seed: int, sid: str) -> bool:
        return (seed, sid) in self._scenes

    def get(self, seed: int, sid: str) -> dict | None:
        """The scene's canonical definition (None when unknown or evicted). A tile request takes
        it when it is accepted, so a later eviction cannot fail its render."""
        return self._scenes.get((seed, sid))

    def build(self, seed: int, scene: dict):
        from ..scene.field import Box, Point
        from ..scene.scene import Resample, Scene, StyleCentre

        centres = [StyleCentre(Point(*c["point"]) if "point" in c else Box(*c["box"]), seed=c["seed"])
                   for c in scene["centres"]]
        resample = [Resample(*r["region"], seed=r["seed"]) for r in scene["resample"]]
        return Scene(seed, centres, resample)

    def canvas_for(self, seed: int, sid: str, scene: dict | None = None):
        """(canvas with its fusion, zg, W+) of a scene (the renderer's hook): ``scene``, the
        definition the request took, else the registered one."""
        import torch

        from ..scene.bind import bind_scene

        synth = self.renderer.synth
        canvas = bind_scene(self.build(seed, scene if scene is not None else self._scenes[(seed, sid)]), synth)
        with torch.inference_mode():
            zg, styles = synth.styles(canvas)
        return canvas, zg, styles

    async def endpoint(self, request: Request):
        raw = request.path_params["seed"]
        if not _SEED.fullmatch(raw) or int(raw) > SEED_LIMIT:
            return JSONResponse({"error": f"seed must be in 0..{SEED_LIMIT}"}, status_code=400)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return JSONResponse({"error": "a scene is sent as application/json"}, status_code=415)
        length = request.headers.get("content-length")
        if length is not None and (not length.isascii() or not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"error": "scene too large"}, status_code=413)  # refused before reading
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": "scene too large"}, status_code=413)
        try:
            sid = self.post(int(raw), json.loads(bytes(body) or b"{}"))
        except RecursionError:
            return JSONResponse({"error": "the scene is nested too deeply"}, status_code=400)
        except (ValueError, UserError) as e:
            msg = str(e) if isinstance(e, UserError) else "the body must be JSON"
            return JSONResponse({"error": msg[:200]}, status_code=400)
        return JSONResponse({"id": sid})

    def routes(self) -> list:
        return [Route("/api/scenes/{seed}", self.endpoint, methods=["POST"])]
