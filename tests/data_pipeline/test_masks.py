"""Coarse bone masks (OpenCV) and the per-patch targets of the structure regulariser."""

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.data.masks import BoneMaskParams, bone_mask, patch_targets
from sranet.data.synthetic import generate_case
from sranet.errors import InputError
from sranet.runtime.preprocess import preprocess


def test_patch_order_on_a_hand_made_mask():
    mask = np.zeros((8, 8, 8), dtype=np.uint8)
    mask[2:4, 4:6, 6:8] = 255  # grid position (i, j, k) = (1, 2, 3) of a 4^3 grid of 2^3 patches
    targets = patch_targets(mask, grid=4)
    assert targets.shape == (64,) and targets.dtype == np.float32
    assert np.flatnonzero(targets).tolist() == [16 * 1 + 4 * 2 + 3]
    mask[0, 0, 0] = 1  # one voxel of patch 0 (1/8 of it); bool and 0/1 masks count too
    assert patch_targets(mask, 4)[0] == 1.0
    assert patch_targets(mask, 4, min_fraction=0.2)[0] == 0.0 and patch_targets(mask, 4, 0.2)[27] == 1.0
    assert patch_targets(mask > 0, grid=2).tolist() == [1, 0, 0, 1, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "shape, grid, frac, match",
    [((8, 8, 6), 4, 0.0, "cubic"), ((9, 9, 9), 4, 0.0, "not divisible"), ((8, 8, 8), 4, 1.5, "min_fraction")],
)
def test_patch_targets_bad_input(shape, grid, frac, match):
    with pytest.raises(InputError, match=match):
        patch_targets(np.zeros(shape), grid, frac)


def test_bone_mask_on_a_hand_made_volume():
    hu = np.full((12, 40, 40), 50.0, dtype=np.float32)  # muscle
    hu[:, :, :8] = -1000.0  # air
    hu[:, 30:, :] = -100.0  # fat
    hu[3:9, 10:22, 12:26] = 300.0  # trabecular block
    hu[3:9, 10:22, 12] = 1200.0  # a cortical wall
    mask = bone_mask(hu)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert mask[4:8, 11:21, 13:25].min() == 255  # the whole block interior, not only its edges
    assert mask[:, :, :8].max() == 0 and mask[:, 30:, :].max() == 0  # air and fat never
    assert mask[0].max() == 0 and mask[:, :, 30:].max() == 0  # muscle away from the bone never
    coarse = mask[3:9].astype(bool) & (hu[3:9] < 150)  # dilation makes it coarse: a rim of 1-2 voxels
    assert 0 < coarse.sum() < 0.5 * (mask > 0).sum()


def test_bone_mask_params_validate():
    with pytest.raises(InputError, match="odd"):
        BoneMaskParams(block_size=14)
    assert BoneMaskParams().to_dict()["window_hu"] == [-200.0, 1300.0]


def test_bone_and_air_patches_on_a_phantom():
    import cv2

    case = generate_case(6, 2, shape=(48, 96, 96))
    assert (case.hu < -500).mean() > 0.1  # this seed's crop holds air in front of the groin
    prepared = preprocess(case.to_volume(), PreprocessConfig(output_size=48))
    targets = patch_targets(bone_mask(prepared.hu), 4)

    def per_patch(a):  # (48, 48, 48) -> (64, 12**3), patch n = 16 i + 4 j + k
        return a.reshape(4, 12, 4, 12, 4, 12).transpose(0, 2, 4, 1, 3, 5).reshape(64, -1)

    # voxels within 3 in-plane voxels of anything >= 150 HU (the mask's dilation may reach that far, no further)
    near_bone = np.stack([cv2.dilate((s >= 150).astype(np.uint8), np.ones((7, 7), np.uint8)) for s in prepared.hu])
    air = (per_patch(prepared.hu) < -500).mean(axis=1) > 0.5
    far = per_patch(near_bone).max(axis=1) == 0
    bone = (per_patch(prepared.hu) > 250).mean(axis=1) > 0.2
    assert (air & far).sum() >= 4 and bone.sum() >= 4
    assert targets[far].max() == 0.0  # air and soft-tissue patches away from bone: no bone
    assert targets[bone].min() == 1.0  # patches full of bone: bone
