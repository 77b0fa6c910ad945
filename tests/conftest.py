"""Shared fixtures: tiny random models built in-process (no downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from infinitygan.api import Model, init_model

REPO = Path(__file__).resolve().parents[1]


def official_fixture_dir() -> Path:
    return Path(os.environ.get("INFINITYGAN_OFFICIAL_FIXTURE", REPO.parent / "shared" / "fixtures" / "official"))


def fixtures_required() -> bool:
    """True under CI (CI set to anything but "", 0 or false) or INFINITYGAN_REQUIRE_FIXTURES=1:
    then a missing fixture fails the run instead of skipping its tests."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false") or os.environ.get("INFINITYGAN_REQUIRE_FIXTURES", "") == "1"


def official_fixture(name: str) -> Path:
    """Path of a file of the authors' fixture; skips the test when it is missing (fails instead
    when fixtures are required, see ``fixtures_required``)."""
    path = official_fixture_dir() / name
    if not path.is_file():
        msg = f"official fixture {name} not found in {path.parent}"
        if fixtures_required():
            pytest.fail(f"{msg} (required under CI / INFINITYGAN_REQUIRE_FIXTURES=1)", pytrace=False)
        pytest.skip(msg)
    return path


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
