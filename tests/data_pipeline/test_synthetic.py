"""Synthetic phantoms: shapes, determinism, speed, and that each ARCO stage shows (or hides) what it should."""


import numpy as np
import pytest

from sranet.data.synthetic import generate_case
from sranet.data.synthetic_dataset import allot_splits, allot_stages, parse_shape, parse_stage_mix
from sranet.errors import InputError

SHAPE = (48, 64, 64)
SEED = 11


@pytest.fixture(scope="module")
def stages():
    return {s: generate_case(SEED, s, shape=SHAPE, spacing_mm=(1.0, 0.8, 0.8)) for s in range(5)}


def _outside_box(mask: np.ndarray, margin: int) -> np.ndarray:
    """Boolean (D, H, W): voxels outside the mask's bounding box grown by ``margin`` voxels."""
    out = np.ones(mask.shape, dtype=bool)
    idx = np.nonzero(mask)
    box = tuple(slice(max(0, i.min() - margin), i.max() + margin + 1) for i in idx)
    out[box] = False
    return out


def test_case_shapes_types_and_values(stages):
    case = stages[2]
    assert case.hu.shape == SHAPE and case.hu.dtype == np.float32
    assert case.lesion_mask.shape == SHAPE and case.lesion_mask.dtype == np.uint8
    assert set(np.unique(case.lesion_mask)) == {0, 1}
    assert np.array_equal(case.hu, np.rint(case.hu))  # integer HU: lossless through int16 DICOM
    assert case.hu.min() >= -1024 and case.hu.max() <= 3071
    # the phantom has fat/muscle (< 100 HU), trabecular bone (150-500) and cortex (> 700)
    assert (case.hu < 100).mean() > 0.2 and ((case.hu > 150) & (case.hu < 500)).mean() > 0.03 and (case.hu > 700).any()
    assert case.label == 1 and case.stage == 2 and case.side in ("L", "R")


def test_roi_box_contains_the_head_and_the_lesion(stages):
    case = stages[3]
    (d0, d1), (h0, h1), (w0, w1) = case.roi_box
    assert case.roi == f"{d0}:{d1},{h0}:{h1},{w0}:{w1}"
    centre = [c / s for c, s in zip(case.head_center_mm, case.spacing_mm, strict=True)]
    for (lo, hi), c, n in zip(case.roi_box, centre, SHAPE, strict=True):
        assert 0 <= lo < c < hi <= n
    inside = np.zeros(SHAPE, dtype=bool)
    inside[d0:d1, h0:h1, w0:w1] = True
    assert case.lesion_mask[~inside].sum() == 0


def test_deterministic_and_anatomy_shared_across_stages(stages):
    again = generate_case(SEED, 2, shape=SHAPE, spacing_mm=(1.0, 0.8, 0.8))
    assert np.array_equal(again.hu, stages[2].hu) and np.array_equal(again.lesion_mask, stages[2].lesion_mask)
    other = generate_case(SEED + 1, 2, shape=SHAPE, spacing_mm=(1.0, 0.8, 0.8))
    assert not np.array_equal(other.hu, stages[2].hu)


def test_stage_0_has_no_lesion_and_stage_1_is_invisible(stages):
    assert stages[0].lesion_mask.sum() == 0 and stages[0].label == 0
    assert stages[1].lesion_mask.sum() > 20 and stages[1].label == 1
    assert np.array_equal(stages[0].hu, stages[1].hu)  # ARCO I: positive label, no CT change (label noise)


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_visible_stages_change_hu_inside_the_head(stages, stage):
    diff = np.abs(stages[stage].hu - stages[0].hu)
    mask = stages[stage].lesion_mask.astype(bool)
    assert diff[mask].mean() > 80.0  # sclerosis, cysts, crescent: clearly visible
    if stage == 2:  # no shape change: everything away from the lesion is untouched
        assert diff[_outside_box(mask, margin=6)].max() == 0


def test_stage_4_collapses_the_head_and_stage_3_less(stages):
    cortex_lost = {s: int(((stages[0].hu > 600) & (stages[s].hu < 200)).sum()) for s in (2, 3, 4)}
    assert cortex_lost[4] > cortex_lost[3] > cortex_lost[2]
    r = stages[0].head_radius_mm
    assert 0.15 * r <= stages[4].params["collapse"] <= 0.25 * r and 0.045 * r <= stages[3].params["collapse"] <= 0.085 * r


def test_generation_at_full_size():
    """The default size; its speed is measured in benchmarks/synth_speed.py, not here."""
    case = generate_case(5, 4)  # default 96 x 128 x 128
    assert case.hu.shape == (96, 128, 128)
    assert case.lesion_mask.shape == case.hu.shape and case.lesion_mask.any()


def test_spacing_ranges_and_sides_vary():
    cases = [generate_case(s, 0, shape=(16, 24, 24)) for s in range(12)]
    sp = np.array([c.spacing_mm for c in cases])
    assert sp[:, 0].min() >= 0.6 and sp[:, 0].max() <= 1.5 and sp[:, 1].min() >= 0.6 and sp[:, 1].max() <= 0.9
    assert len(set(np.round(sp[:, 0], 3))) > 6
    assert {c.side for c in cases} == {"L", "R"}


@pytest.mark.parametrize(
    "kwargs, match",
    [({"stage": 5}, "ARCO stage"), ({"shape": (8, 64, 64)}, ">= 16"), ({"side": "left"}, "side"),
     ({"spacing_mm": (1.0, 0.0, 1.0)}, "spacing_mm")],
)
def test_bad_arguments_are_typed_errors(kwargs, match):
    args = {"seed": 0, "stage": 0, **kwargs}
    with pytest.raises(InputError, match=match):
        generate_case(args.pop("seed"), args.pop("stage"), **args)


def test_stage_mix_sizes_and_allotment():
    mix = parse_stage_mix("0:2,2:1,4:1")
    assert mix == {0: 0.5, 2: 0.25, 4: 0.25}
    assert parse_shape("32x48x48") == (32, 48, 48) and parse_shape("64") == (64, 64, 64)
    with pytest.raises(InputError, match="stage:weight"):
        parse_stage_mix("0:0.5,7:0.5")
    with pytest.raises(InputError, match="--size"):
        parse_shape("12x12")
    rng = np.random.default_rng(0)
    stages = allot_stages(20, parse_stage_mix("0:0.5,1:0.05,2:0.15,3:0.15,4:0.15"), rng)
    assert sorted(stages).count(0) == 10 and stages.count(1) == 1 and len(stages) == 20
    labels = [int(s > 0) for s in stages]
    splits = allot_splits(labels, {"train": 0.7, "val": 0.15, "test": 0.15}, rng)
    for split in ("train", "val", "test"):  # stratified: both classes in every split
        assert {lab for lab, sp in zip(labels, splits, strict=True) if sp == split} == {0, 1}
