"""GPU preprocessing. Its code is written for the array API that CuPy and numpy share, so here (no GPU) the very
same functions run on numpy and are checked against an independent reference and against the CPU path; on a GPU
(marked `gpu`) they run on CuPy and are checked against the CPU path."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from sranet.config import PreprocessConfig
from sranet.runtime.preprocess_gpu import axis_taps, input_window, normalize_xp, resample_xp


def plan(out_shape, scale, offset):
    """The contract's ResamplePlan fields: output voxel o samples input index offset + scale * o."""
    return SimpleNamespace(out_shape=tuple(out_shape), scale=np.asarray(scale, float), offset=np.asarray(offset, float))


def reference_resample(hu, p, cfg):
    """Per-voxel trilinear (scipy map_coordinates, order 1) at offset + scale * o, clamped to the input; a position
    beyond the outer face of an edge voxel (x < -0.5 or x > n - 0.5) -> pad."""
    axes = zip(p.offset, p.scale, p.out_shape, strict=True)
    grids = np.meshgrid(*[o + s * np.arange(n) for o, s, n in axes], indexing="ij")
    order = 1 if cfg.interpolation == "linear" else 0
    inside = np.ones(p.out_shape, bool)
    for g, n in zip(grids, hu.shape, strict=True):
        inside &= (g >= -0.5) & (g <= n - 0.5)
    coords = np.stack([np.clip(g, 0, n - 1) for g, n in zip(grids, hu.shape, strict=True)])
    values = ndimage.map_coordinates(hu.astype(np.float64), coords, order=order, mode="nearest")
    return np.where(inside, values, cfg.pad_value_hu).astype(np.float32)


@pytest.fixture(scope="module")
def hu():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((23, 31, 27)) * 400).astype(np.float32)


@pytest.mark.parametrize(
    ("out_shape", "scale", "offset"),
    [
        ((16, 16, 16), (1.4, 1.9, 1.6), (0.0, 0.0, 0.0)),  # shrink, fully inside
        ((16, 16, 16), (0.6, 0.7, 0.5), (3.3, 5.1, 4.7)),  # zoom into a box
        ((16, 16, 16), (2.0, 2.5, 2.2), (-4.0, -3.5, -6.25)),  # box larger than the scan: padding on every side
    ],
)
@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_numpy_run_of_the_gpu_code_matches_a_per_voxel_reference(hu, out_shape, scale, offset, interpolation):
    cfg = PreprocessConfig(output_size=16, interpolation=interpolation, pad_value_hu=-1024.0)
    p = plan(out_shape, scale, offset)
    got = resample_xp(hu, p, cfg, np)
    ref = reference_resample(hu, p, cfg)
    assert got.dtype == np.float32 and got.shape == out_shape
    if interpolation == "linear":
        np.testing.assert_allclose(got, ref, atol=2e-3)
    else:  # ties at exact .5 may round either way; everything else must agree
        assert np.mean(np.isclose(got, ref, atol=1e-3)) > 0.99
    assert (got == -1024.0).any() == (min(offset) < 0)


def test_only_the_touched_window_is_uploaded(hu):
    p = plan((8, 8, 8), (0.5, 0.5, 0.5), (10.0, 12.0, 9.0))
    axes = zip(hu.shape, p.offset, p.scale, p.out_shape, strict=True)
    taps = [axis_taps(o + s * np.arange(k), 0, n, "linear") for n, o, s, k in axes]
    assert input_window(taps) == (slice(10, 15), slice(12, 17), slice(9, 14))
    uploaded = []
    resample_xp(hu, p, PreprocessConfig(output_size=8), np, upload=lambda a: uploaded.append(a.shape) or a)
    assert uploaded == [(5, 5, 5)]


@pytest.mark.parametrize("mode", ["zscore", "window"])
def test_normalize(mode):
    cfg = PreprocessConfig(output_size=8, window_hu=(-200.0, 600.0), normalize=mode)
    x = np.linspace(-1000, 2000, 512, dtype=np.float32).reshape(8, 8, 8)
    out = normalize_xp(x, cfg, np)
    clipped = np.clip(x, -200, 600)
    if mode == "zscore":
        np.testing.assert_allclose(out, (clipped - clipped.mean()) / clipped.std(), atol=1e-5)
    else:
        assert out.min() == 0.0 and out.max() == 1.0
    constant = normalize_xp(np.full((8, 8, 8), 50.0, np.float32), cfg, np)
    assert np.isfinite(constant).all() and (mode == "window" or not constant.any())


def _cpu():
    return pytest.importorskip("sranet.runtime.preprocess", reason="sranet.runtime.preprocess is not in this tree yet")


def synthetic_volume():
    from sranet.runtime.volume import Volume

    rng = np.random.default_rng(3)
    hu = (rng.standard_normal((40, 64, 56)) * 300).astype(np.float32)
    direction = np.diag([1.0, -1.0, 1.0])  # a flipped axis: the plan's scale is negative there
    return Volume(hu=hu, spacing_mm=(1.25, 0.7, 0.7), origin_mm=(0.0, 0.0, 0.0), direction=direction)


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
@pytest.mark.parametrize("roi", [None, "5:30,10:50,8:40"])
def test_numpy_run_matches_the_cpu_preprocessing(interpolation, roi):
    from sranet.runtime.roi import parse_roi

    cpu = _cpu()
    cfg = PreprocessConfig(output_size=32, interpolation=interpolation)
    volume = synthetic_volume()
    ref = cpu.preprocess(volume, cfg, None if roi is None else parse_roi(roi))
    hu = resample_xp(volume.hu, ref.plan, cfg, np)
    np.testing.assert_allclose(hu, ref.hu, atol=1e-2)
    np.testing.assert_allclose(normalize_xp(hu, cfg, np), ref.input, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="needs CuPy and an NVIDIA GPU")
def test_cupy_matches_the_cpu_preprocessing():
    from sranet.runtime.preprocess_gpu import preprocess_gpu

    cpu = _cpu()
    cfg = PreprocessConfig(output_size=32)
    volume = synthetic_volume()
    ref = cpu.preprocess(volume, cfg)
    got = preprocess_gpu(volume, cfg)
    np.testing.assert_allclose(got.hu, ref.hu, atol=1e-2)
    np.testing.assert_allclose(got.input, ref.input, atol=1e-4)
    assert {"resample_gpu", "normalize_gpu"} <= set(got.timings_ms)
