"""The femoral-head localiser: accuracy and sides on pelvis phantoms in every position and array layout, refusal on
studies without hips (phantoms and real CT), metal and truncation flags, ROIs and the read plan."""

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.data.synthetic_pelvis import generate_pelvis_study
from sranet.errors import ConfigError, NoUsableSeriesError
from sranet.runtime.io import load_volume
from sranet.runtime.localise import locate_femoral_heads
from sranet.runtime.localise_roi import head_roi, localiser_slices, read_plan, roi_truncated
from sranet.runtime.roi import roi_box
from sranet.runtime.volume import Volume
from tests.helpers import DATA_DIR, unpack_ge_series

SMALL = {"slices": 80, "slice_mm": 3.0}


@pytest.fixture(scope="module")
def studies():
    """Four patients, one per patient position, with lesions of every visible stage."""
    specs = [(31, "HFS", {"L": 4, "R": 0}), (32, "FFS", {"L": 2, "R": 3}), (33, "HFP", {"L": 0, "R": 4}),
             (34, "FFP", {"L": 3, "R": 1})]
    return [generate_pelvis_study(seed, patient_position=pos, stages=st, **SMALL) for seed, pos, st in specs]


def _errors(study, loc) -> dict[str, float]:
    return {side: float(np.linalg.norm(np.subtract(h.centre_mm, study.hips[side].centre_mm)))
            for side, h in loc.heads.items()}


def test_both_heads_found_within_5_mm_in_every_patient_position(studies):
    for s in studies:
        loc = locate_femoral_heads(s.to_volume())
        assert set(loc.heads) == {"L", "R"} and not loc.reasons, (s.patient_position, loc.to_dict())
        assert max(_errors(s, loc).values()) <= 5.0, (s.patient_position, _errors(s, loc))
        for side, head in loc.heads.items():
            assert abs(head.radius_mm - s.hips[side].radius_mm) <= 3.0
            assert 0.6 <= head.confidence <= 1.0 and head.qc == ()
            assert head.roi.side == side and head.roi.units == "mm"


def _reoriented(vol: Volume, perm, flips) -> Volume:
    """The same voxels in another array layout: axes permuted by ``perm``, then flipped where ``flips``."""
    hu = np.transpose(vol.hu, perm)
    direction = np.asarray(vol.direction)[:, perm]
    spacing = tuple(np.asarray(vol.spacing_mm)[list(perm)])
    origin = np.asarray(vol.origin_mm, dtype=float)
    for a, flip in enumerate(flips):
        if flip:
            origin = origin + direction[:, a] * spacing[a] * (hu.shape[a] - 1)
            direction[:, a] = -direction[:, a]
            hu = np.flip(hu, a)
    return Volume(np.ascontiguousarray(hu), spacing, tuple(origin), direction)


@pytest.mark.parametrize("perm, flips", [((0, 1, 2), (True, True, True)), ((2, 1, 0), (False, False, False)),
                                         ((1, 0, 2), (False, True, False)), ((2, 0, 1), (True, False, True))])
def test_sides_come_from_geometry_never_from_array_order(studies, perm, flips):
    s = studies[1]
    base = locate_femoral_heads(s.to_volume())
    loc = locate_femoral_heads(_reoriented(s.to_volume(), perm, flips))
    assert set(loc.heads) == {"L", "R"}
    for side in ("L", "R"):
        np.testing.assert_allclose(loc.heads[side].centre_mm, base.heads[side].centre_mm, atol=0.5)
    assert loc.heads["L"].centre_mm[0] > loc.heads["R"].centre_mm[0]


@pytest.mark.parametrize("kind, seed", [("abdomen", 3), ("chest", 4), ("knee", 6)])
def test_no_head_on_studies_without_hips(kind, seed):
    loc = locate_femoral_heads(generate_pelvis_study(seed, kind=kind, **SMALL).to_volume())
    assert loc.heads == {} and set(loc.reasons) == {"L", "R"}
    assert all(r.startswith("no femoral head found: ") for r in loc.reasons.values())


def test_no_head_on_real_ct_without_hips(tmp_path):
    abdomen = load_volume(DATA_DIR / "realct" / "totalsegmentator" / "example_ct_sm.nii.gz")
    assert locate_femoral_heads(abdomen).heads == {}  # kidneys and lumbar spine
    ge_head = load_volume(unpack_ge_series(tmp_path))
    assert locate_femoral_heads(ge_head).heads == {}  # a head CT (tilted, irregular spacing)
    for name in ("pydicom/CT_small.dcm", "pydicom-data/693_UNCI.dcm", "pylibjpeg-data/CT1_JLSN.dcm",
                 "pydicom-data/eCT_Supplemental.dcm"):  # single slices and a two-frame enhanced CT
        loc = locate_femoral_heads(load_volume(DATA_DIR / "realct" / name))
        assert loc.heads == {} and "at least 40 mm along every axis" in loc.reasons["L"], name
    with pytest.raises(NoUsableSeriesError, match="localizer"):  # the coronal slice through both hips is a scout
        load_volume(DATA_DIR / "realct" / "pylibjpeg-data" / "MAROTECH_CT_JP2Lossy.dcm")


def test_unusable_volumes_get_a_reason_not_an_exception():
    hu = np.zeros((40, 64, 64), np.float32)
    hu[5, 5, 5] = np.nan
    loc = locate_femoral_heads(Volume(hu, (2.0, 2.0, 2.0)))
    assert loc.heads == {} and "non-finite" in loc.reasons["R"]
    flat = locate_femoral_heads(Volume(np.zeros((40, 64, 64), np.float32), (2.0, 2.0, 2.0)))
    assert flat.heads == {} and flat.reasons["L"].startswith("no femoral head found: no bone sphere")


def test_one_hip_in_view_gives_one_head_on_the_right_side():
    s = generate_pelvis_study(41, variant="hip_out_of_fov", **SMALL)
    seen = next(side for side, h in s.hips.items() if h.visibility == "full")
    other = "R" if seen == "L" else "L"
    loc = locate_femoral_heads(s.to_volume())
    assert list(loc.heads) == [seen] and _errors(s, loc)[seen] <= 5.0
    assert loc.reasons[other].startswith("no femoral head found")


@pytest.mark.parametrize("variant", ["screws", "prosthesis"])
def test_metal_in_a_head_is_flagged(variant):
    s = generate_pelvis_study(26, variant=variant, metal_side="L", **SMALL)
    loc = locate_femoral_heads(s.to_volume())
    assert "metal_near_head" in loc.heads["L"].qc
    assert "metal_near_head" not in loc.heads["R"].qc and _errors(s, loc)["R"] <= 5.0


def test_head_cut_by_the_scan_edge_is_flagged():
    s = generate_pelvis_study(60, variant="head_cut", **SMALL)
    loc = locate_femoral_heads(s.to_volume())
    partial = [side for side, h in s.hips.items() if h.visibility == "partial" and side in loc.heads]
    assert partial
    for side in partial:
        assert "roi_truncated" in loc.heads[side].qc and "head_truncated" in loc.heads[side].qc


def test_roi_margin_comes_from_the_preprocessing_config(studies):
    s = studies[0]
    vol = s.to_volume()
    loc = locate_femoral_heads(vol, preprocess=PreprocessConfig(roi_margin_mm=8.0))
    head = loc.heads["L"]
    assert head.roi == head_roi(head, PreprocessConfig(roi_margin_mm=8.0))
    lo, hi = np.array(head.roi.lo), np.array(head.roi.hi)
    np.testing.assert_allclose(hi - lo, 2 * (head.radius_mm + 8.0), atol=0.02)
    np.testing.assert_allclose((lo + hi) / 2, head.centre_mm, atol=0.02)
    assert not roi_truncated(head.roi, vol)
    assert np.all(hi - lo > np.array(head_roi(head).hi) - np.array(head_roi(head).lo))  # default margin 5 mm


def test_read_plan_decodes_one_slice_range_for_both_hips(studies):
    s = studies[2]
    vol = s.to_volume()
    loc = locate_femoral_heads(vol)
    plan = read_plan(loc.heads, vol.shape, vol.affine)
    assert set(plan.boxes) == {"L", "R"}
    for side, box in plan.boxes.items():
        assert box == roi_box(loc.heads[side].roi, vol.shape, vol.affine)
        assert plan.union.lo[0] <= box[0][0] and box[0][1] <= plan.union.hi[0]
    assert plan.slices["L"] == plan.boxes["L"][0]
    part = load_volume_from_memory(vol, plan.union)
    for side in ("L", "R"):  # each hip's ROI maps into the one read with the same voxels
        (d0, d1), (h0, h1), (w0, w1) = roi_box(loc.heads[side].roi, part.shape, part.affine)
        (D0, D1), (H0, H1), (W0, W1) = plan.boxes[side]
        np.testing.assert_array_equal(part.hu[d0:d1, h0:h1, w0:w1], vol.hu[D0:D1, H0:H1, W0:W1])
    idx = localiser_slices(300, 1.0)
    assert idx[0] == 2 and np.all(np.diff(idx) == 4) and len(idx) == 75


def load_volume_from_memory(vol: Volume, roi) -> Volume:
    """What ``load_volume(path, roi=roi)`` returns, for an in-memory volume: the box with its geometry."""
    (d0, d1), (h0, h1), (w0, w1) = roi_box(roi, vol.shape, vol.affine)
    origin = vol.index_to_patient(np.array([d0, h0, w0]))
    return Volume(vol.hu[d0:d1, h0:h1, w0:w1], vol.spacing_mm, tuple(origin), vol.direction)


def test_preprocess_config_roi_margin_round_trips_and_defaults():
    cfg = PreprocessConfig(output_size=64, roi_margin_mm=7.5)
    assert PreprocessConfig.from_json(cfg.to_json()) == cfg
    old = {k: v for k, v in PreprocessConfig().to_dict().items() if k != "roi_margin_mm"}
    assert PreprocessConfig.from_dict(old).roi_margin_mm == 5.0  # a config stored without it
    for bad in (-1.0, 500.0, "5", True):
        with pytest.raises(ConfigError, match="roi_margin_mm"):
            PreprocessConfig(roi_margin_mm=bad)


@pytest.mark.slow
def test_accuracy_sweep_on_held_out_phantoms():
    """benchmarks/localise_accuracy.py runs the full evaluation; this is a smaller sweep with the same checks."""
    errors, false_heads = [], 0
    for seed in range(1000, 1024):
        s = generate_pelvis_study(seed, stages={"L": seed % 5, "R": (seed * 3) % 5})
        loc = locate_femoral_heads(s.to_volume())
        assert set(loc.heads) == {"L", "R"}, (seed, loc.to_dict())
        errors += _errors(s, loc).values()
    for seed, kind in enumerate(["abdomen", "chest", "knee"] * 4):
        false_heads += len(locate_femoral_heads(generate_pelvis_study(2000 + seed, kind=kind).to_volume()).heads)
    assert max(errors) <= 5.0 and false_heads == 0


def test_localiser_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, sranet.runtime.localise, sranet.runtime.localise_roi; "
            "print([m for m in ('torch', 'onnxruntime', 'scipy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
