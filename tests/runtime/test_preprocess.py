"""ResamplePlan math, separable resampling, aspect-preserving padding, normalisation, ROI-limited equivalence."""


import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.errors import ConfigError, EmptyRoiError
from sranet.runtime.io import load_volume
from sranet.runtime.preprocess import normalize, plan_resample, preprocess, resample
from sranet.runtime.roi import parse_roi
from sranet.runtime.volume import Volume

CFG = PreprocessConfig(output_size=48)


def _linear_volume(shape=(30, 40, 50), spacing=(2.0, 1.0, 0.5)):
    d, h, w = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return Volume(3 * d - 2 * h + 0.5 * w, spacing, (5.0, -3.0, 7.0))


def test_plan_keeps_aspect_and_centres_the_roi():
    v = _linear_volume()
    plan = plan_resample(v, CFG, parse_roi("0:30,0:40,0:50"))
    # extents 60, 40, 25 mm: the largest (D) spans 48 voxels of 1.25 mm
    np.testing.assert_allclose(plan.scale, [1.25 / 2.0, 1.25 / 1.0, 1.25 / 0.5])
    centre = plan.offset + plan.scale * (48 - 1) / 2
    np.testing.assert_allclose(centre, [14.5, 19.5, 24.5])
    # D covers the box exactly: first and last samples sit half an output voxel inside the box faces
    x = plan.sample_positions(0)
    assert x[0] - (-0.5) == pytest.approx(plan.scale[0] / 2) and 29.5 - x[-1] == pytest.approx(plan.scale[0] / 2)
    np.testing.assert_allclose(plan.output_to_input @ [3, 4, 5, 1], [*(plan.offset + plan.scale * [3, 4, 5]), 1])
    patient = plan.output_to_patient(v) @ [0, 0, 0, 1]
    np.testing.assert_allclose(patient[:3], v.index_to_patient(plan.offset))


def test_resample_is_exact_for_linear_fields_and_pads_outside_the_box():
    v = _linear_volume()
    prepared = preprocess(v, CFG, parse_roi("0:30,0:40,0:50"))
    plan, hu = prepared.plan, prepared.hu
    assert hu.shape == (48, 48, 48) and hu.dtype == np.float32
    inside = [(plan.sample_positions(a) >= -0.5) & (plan.sample_positions(a) <= n - 0.5)
              for a, n in enumerate(v.shape)]
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    assert mask.mean() == pytest.approx(40 * 25 / 60**2, abs=0.03)  # 40 and 25 mm axes padded to the 60 mm cube
    assert np.all(hu[~mask] == CFG.pad_value_hu)
    grid = np.stack(np.meshgrid(*[plan.sample_positions(a) for a in range(3)], indexing="ij"), -1)
    clamped = np.clip(grid, 0, np.array(v.shape) - 1)
    expected = clamped @ np.array([3.0, -2.0, 0.5])
    np.testing.assert_allclose(hu[mask], expected[mask], atol=1e-3)


def test_keep_aspect_false_stretches_each_axis_to_fill():
    v = _linear_volume()
    plan = plan_resample(v, PreprocessConfig(output_size=48, keep_aspect=False), None)
    np.testing.assert_allclose(plan.scale, [30 / 48, 40 / 48, 50 / 48])
    hu = resample(v.hu, plan, PreprocessConfig(output_size=48, keep_aspect=False))
    assert np.all(hu > CFG.pad_value_hu)


def test_nearest_takes_existing_values():
    v = Volume(np.random.default_rng(0).integers(-1000, 2000, (20, 20, 20)).astype(np.int16), (1.0, 1.0, 1.0))
    cfg = PreprocessConfig(output_size=16, interpolation="nearest")
    hu = preprocess(v, cfg).hu
    assert set(np.unique(hu)) <= set(np.unique(v.hu).astype(np.float32))


def test_roi_in_voxels_and_in_mm_give_the_same_input():
    v = _linear_volume()
    vox = preprocess(v, CFG, parse_roi("5:15,10:30,20:40"))
    lo = v.index_to_patient(np.array([5, 10, 20]) - 0.4)
    hi = v.index_to_patient(np.array([15, 30, 40]) - 0.6)
    mm = preprocess(v, CFG, parse_roi("mm:" + ",".join(f"{a}:{b}" for a, b in zip(lo, hi, strict=False))))
    assert mm.plan.box == vox.plan.box == ((5, 15), (10, 30), (20, 40))
    np.testing.assert_array_equal(mm.input, vox.input)


def test_empty_roi_raises():
    with pytest.raises(EmptyRoiError, match="does not overlap"):
        preprocess(_linear_volume(), CFG, parse_roi("mm:1000:1010,0:1,0:1"))


def test_zscore_and_window_normalisation():
    hu = np.linspace(-2000, 3000, 16**3, dtype=np.float32).reshape(16, 16, 16)
    z = normalize(hu, PreprocessConfig(output_size=16))
    clipped = np.clip(hu, -1000, 2000)
    np.testing.assert_allclose(z, (clipped - clipped.mean()) / clipped.std(), atol=1e-5)
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0, abs=1e-5)
    w = normalize(hu, PreprocessConfig(output_size=16, normalize="window", window_hu=(-100.0, 300.0)))
    k = int(np.argmin(np.abs(hu - 100.0)))
    assert w.min() == 0.0 and w.max() == 1.0 and w.flat[k] == pytest.approx((hu.flat[k] + 100) / 400)
    assert np.all(normalize(np.full((8, 8, 8), 50.0, np.float32), PreprocessConfig(output_size=8)) == 0)


def test_canonical_flip_maps_output_axes_to_positive_lps():
    v = _linear_volume()
    v.direction = np.diag([1.0, -1.0, 1.0])  # H runs anterior
    p = preprocess(v, CFG)
    assert p.plan.scale[1] < 0 and p.plan.output_to_patient(v)[1, 1] > 0
    q = preprocess(v, PreprocessConfig(output_size=48, canonical=False))
    np.testing.assert_allclose(p.hu, q.hu[:, ::-1, :], atol=1e-3)


def test_roi_limited_load_prepares_identically(tmp_path):
    v = _linear_volume()
    np.save(tmp_path / "ct.npy", v.hu)
    roi = parse_roi("mm:10:40,10:30,10:20")
    full = load_volume(tmp_path / "ct.npy", spacing_mm=v.spacing_mm)
    part = load_volume(tmp_path / "ct.npy", spacing_mm=v.spacing_mm, roi=roi)
    assert part.hu.size < full.hu.size and part.index_offset != (0, 0, 0)
    np.testing.assert_array_equal(preprocess(part, CFG, roi).input, preprocess(full, CFG, roi).input)
    np.testing.assert_allclose(preprocess(part, CFG, roi).plan.output_to_patient(part),
                               preprocess(full, CFG, roi).plan.output_to_patient(full), atol=1e-9)


def test_prepared_fields_and_config_validation():
    p = preprocess(_linear_volume(), CFG)
    assert p.input.shape == (48, 48, 48) and p.input.dtype == np.float32
    assert set(p.timings_ms) == {"plan", "resample", "normalize"}
    with pytest.raises(ConfigError, match="interpolation"):
        PreprocessConfig(interpolation="cubic")
    assert PreprocessConfig.from_json(PreprocessConfig().to_json()) == PreprocessConfig()


def test_resampling_a_ct_sized_roi():
    """Works at CT size (300 x 512 x 512 int16). Its speed is measured in benchmarks/preprocess_stages.py, not here."""
    hu = np.zeros((300, 512, 512), np.int16)
    hu[150:200, 200:300, 150:250] = 400
    v = Volume(hu, (1.0, 0.7, 0.7))
    p = preprocess(v, PreprocessConfig(), parse_roi("100:228,150:330,100:280"))
    assert p.input.shape == (128, 128, 128) and p.input.dtype == np.float32
    assert p.hu.max() == pytest.approx(400.0) and np.isfinite(p.input).all()
