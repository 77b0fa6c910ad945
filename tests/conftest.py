"""Shared fixtures: tiny random models built in-process (no downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from infinitygan.api import Model, init_model

REPO = Path(__file__).resolve().parents[1]


def benchmark_script(name: str):
    """benchmarks/NAME.py imported as a module (the scripts are not a package), registered in
    sys.modules under NAME so that its dataclasses and pickles resolve."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------ what a test needs from outside
def under_ci() -> bool:
    """CI set to anything but "", 0 or false (as CI services set it; .ci/run sets it too)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def fixtures_required() -> bool:
    """True under CI or INFINITYGAN_REQUIRE_FIXTURES=1: then a missing fixture fails the run
    instead of skipping its tests."""
    return under_ci() or os.environ.get("INFINITYGAN_REQUIRE_FIXTURES", "") == "1"


def browser_required() -> bool:
    """True under CI or INFINITYGAN_REQUIRE_BROWSER=1: then a missing Chromium (or Playwright, or
    a WebGPU adapter in it) fails the browser tests instead of skipping them."""
    return under_ci() or os.environ.get("INFINITYGAN_REQUIRE_BROWSER", "") == "1"


def unavailable(reason: str, required: bool, variable: str):
    """The one way a test meets something missing from outside the repository (a fixture, a
    browser): skip with ``reason``, or fail with it when ``required`` (under CI or ``variable``=1)."""
    if required:
        pytest.fail(f"{reason} (required under CI / {variable}=1)", pytrace=False)
    pytest.skip(reason)


def fixtures_root() -> Path:
    """The folder of the authors' fixtures: $INFINITYGAN_FIXTURES, default ../shared/fixtures
    beside the repository (not in it: see README, "Tests")."""
    return Path(os.environ.get("INFINITYGAN_FIXTURES", REPO.parent / "shared" / "fixtures"))


def official_fixture_dir() -> Path:
    return Path(os.environ.get("INFINITYGAN_OFFICIAL_FIXTURE", fixtures_root() / "official"))


def fixture_file(path: Path, what: str) -> Path:
    """``path`` when it is a file; otherwise skip (fail when fixtures are required)."""
    if not path.is_file():
        unavailable(f"{what} not found: {path}", fixtures_required(), "INFINITYGAN_REQUIRE_FIXTURES")
    return path


def official_fixture(name: str) -> Path:
    """Path of a file of the authors' generator fixture; skips the test when it is missing (fails
    instead when fixtures are required, see ``fixtures_required``)."""
    return fixture_file(official_fixture_dir() / name, f"official fixture {name}")


def randomize_constants(gen: torch.nn.Module, seed: int = 0) -> None:
    """Give constant-initialised parameters (noise weights, biases) random values, so that every
    input (noise included) visibly affects the output in tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("noise.weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("activate.bias") or name.endswith("to_rgbs.0.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="session")
def tiny_model() -> Model:
    m = init_model("tiny", seed=0)
    randomize_constants(m.generator)
    return m


@pytest.fixture(scope="session")
def tiny_model_file(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    tiny_model.save(path)
    return path


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test stops with SIGINT: a shell without job control
    starts background commands (``cmd &``, nohup) with SIGINT ignored, the child inherits that and
    Python then never raises KeyboardInterrupt; the tests must not depend on how they were started."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
