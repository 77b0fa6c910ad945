"""Helpers for driving the explorer page in a real headless Chromium (Debian's /usr/bin/chromium)
through Playwright: a tile server on a loopback port in a background thread, the browser launch."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

CHROMIUM = os.environ.get("INFINITYGAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: added for a WebGPU adapter on the CPU (SwiftShader's Vulkan, shipped with Debian's chromium)
WEBGPU_ARGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan"]


def require_browser() -> None:
    """Playwright and a runnable Chromium at CHROMIUM, or skip the test with the reason;
    under CI or INFINITYGAN_REQUIRE_BROWSER=1 fail instead (``conftest.unavailable``)."""
    from conftest import browser_required, unavailable

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("Playwright is not installed (pip install playwright)", browser_required(),
                    "INFINITYGAN_REQUIRE_BROWSER")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set INFINITYGAN_CHROMIUM)",
                    browser_required(), "INFINITYGAN_REQUIRE_BROWSER")


def require_webgpu_adapter(has_adapter: bool) -> None:
    """The page's WebGPU tests need an adapter (Chromium's SwiftShader); skip without one, fail
    under CI / INFINITYGAN_REQUIRE_BROWSER=1."""
    from conftest import browser_required, unavailable

    if not has_adapter:
        unavailable(f"this Chromium ({CHROMIUM}) gives no WebGPU adapter with {' '.join(WEBGPU_ARGS)}",
                    browser_required(), "INFINITYGAN_REQUIRE_BROWSER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """Run a Starlette app on uvicorn at http://127.0.0.1:PORT in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("the tile server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(30)


@contextlib.contextmanager
def chromium(playwright):
    """A headless Chromium of the system (a fresh profile per launch)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


def loaded_tiles(page) -> int:
    return page.evaluate("document.querySelectorAll('img.leaflet-tile-loaded').length")
