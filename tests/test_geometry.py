"""Golden shapes of the paper (Figure 18 / facts file) and the size arithmetic."""
import pytest
import torch

from infinitygan.config import load_config
from infinitygan.discriminator import Discriminator
from infinitygan.generator import Generator
from infinitygan.geometry import Geometry


def _record(trace: dict, name: str):
    def hook(module, args, output):
        trace[name] = output
    return hook


def _trace_shapes(preset: str, n: int):
    cfg = load_config(preset)
    g = cfg.generator
    m = Geometry(g.n_up, g.gs_layers, g.gs_kernel).gs_margin
    with torch.device("meta"):
        G = Generator(g)
        zl = torch.zeros(2, g.zl_dim, n + 2 * m, n + 2 * m)
        coords = torch.zeros(1, g.coords.channels, n + 2 * m, n + 2 * m)
        trace = {}
        hooks = [layer.register_forward_hook(_record(trace, f"gs{i}")) for i, layer in enumerate(G.structure.layers)]
        hooks += [conv.register_forward_hook(_record(trace, f"ts{i}")) for i, conv in enumerate(G.texture.convs)]
        hooks += [rgb.register_forward_hook(_record(trace, f"rgb{k}")) for k, rgb in enumerate(G.texture.to_rgbs)]
        out = G(torch.zeros(2, g.zg_dim), zl, coords)
        for h in hooks:
            h.remove()
    return cfg, zl, trace, out


def test_paper_101_generator_shapes():
    cfg, zl, trace, out = _trace_shapes("paper-101", 11)
    assert zl.shape[-1] == 35
    assert [trace[f"gs{i}"].shape[-1] for i in range(4)] == [29, 23, 17, 11]
    assert [trace[f"ts{i}"].shape[-1] for i in range(8)] == [19, 17, 31, 29, 55, 53, 103, 101]
    assert [trace[f"rgb{k}"].shape[-1] for k in range(4)] == [17, 29, 53, 101]
    assert tuple(out["rgb"].shape) == (2, 3, 101, 101)
    assert tuple(out["zs"].shape) == (2, 256, 11, 11)
    assert all(trace[f"ts{i}"].shape[1] == 512 for i in range(8))
    assert cfg.generator.n_styles == 9 and cfg.generator.patch_size == 101


def test_paper_101_parameter_count_matches_authors():
    """36,358,944 parameters in the authors' full-size g_ema (their const_z input, 4096, is unused)."""
    cfg = load_config("paper-101")
    with torch.device("meta"):
        G = Generator(cfg.generator)
    assert sum(p.numel() for p in G.parameters()) == 36_358_944 - 256 * 4 * 4


def test_paper_389_and_tiny_patch_sizes():
    for preset, size in (("paper-389", 389), ("tiny", 101)):
        cfg, _, _, out = _trace_shapes(preset, 11)
        assert out["rgb"].shape[-1] == size == cfg.generator.patch_size


@pytest.mark.parametrize("preset,sizes", [
    ("paper-101", [50, 25, 12, 6, 3]),
    ("paper-389", [194, 97, 48, 24, 12, 6, 3]),
])
def test_discriminator_shapes(preset, sizes):
    cfg = load_config(preset)
    P = cfg.generator.patch_size
    with torch.device("meta"):
        D = Discriminator(cfg.discriminator, P)
        trace = {}
        hooks = [block.register_forward_hook(_record(trace, f"block{i}")) for i, block in enumerate(D.blocks)]
        logit, aux = D(torch.zeros(4, 3, P, P))
        for h in hooks:
            h.remove()
    assert [trace[f"block{i}"].shape[-1] for i in range(len(D.blocks))] == sizes
    assert tuple(logit.shape) == (4,) and tuple(aux.shape) == (4, 3)


def test_geometry_arithmetic():
    g = Geometry(4, 4, 7)
    assert g.lattice == 16 and g.gs_margin == 12 and g.shrink == 75
    assert [g.ts_output_size(n) for n in (11, 22, 29)] == [101, 277, 389]
    assert g.ts_sizes(22) == [41, 39, 75, 73, 143, 141, 279, 277]
    assert g.gs_sizes(11) == [35, 29, 23, 17, 11]
    # the window that covers pixels [a, b) starts on the lattice and is minimal
    for a, b in [(0, 1), (-37, 300), (5, 96), (2**40 + 3, 2**40 + 515)]:
        s, n = g.zs_window(a, b)
        p0, p1 = g.pixel_range(s, n)
        assert p0 <= a and p1 >= b
        assert g.pixel_range(s, n - 1)[1] < b
    # noise ranges of adjacent windows tile each layer's lattice consistently
    r1 = g.ts_ranges(0, 11)
    r2 = g.ts_ranges(6, 11)
    assert [b[0] - a[0] for a, b in zip(r1, r2)] == [12, 12, 24, 24, 48, 48, 96, 96]
