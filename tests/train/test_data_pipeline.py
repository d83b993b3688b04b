"""Reading the prepared cache, regulariser targets and augmentation (sranet/data/dataset.py, augment.py)."""

import numpy as np
import pytest
import torch

from sranet.data.augment import AugmentConfig, augment
from sranet.data.dataset import CachedDataset, read_cache
from sranet.errors import ConfigError, TrainingError


def test_read_cache_and_items(tiny_cache):
    index = read_cache(tiny_cache)
    assert index.preprocess.output_size == 48 and index.grid == 4
    ds = CachedDataset(index, "val")
    assert len(ds) == 6
    item = ds[4]
    assert item["volume"].shape == (1, 48, 48, 48) and item["volume"].dtype == torch.float32
    assert item["targets"].shape == (64,) and item["label"].item() == 1.0
    assert ds.load_lesion(4).any() and ds.load_lesion(0) is None


def test_targets_from_hand_made_mask(tmp_path, cache_builder):
    root = cache_builder(tmp_path / "c", {"train": (1, 0)})
    mask = np.zeros((48, 48, 48), np.uint8)
    mask[0:12, 0:12, 0:12] = 255  # patch (0,0,0) -> 0, full
    mask[12:14, 12:24, 12:24] = 255  # patch (1,1,1) -> 21, 2/12 of it
    mask[36:37, 36:37, 36:37] = 255  # patch (3,3,3) -> 63, one voxel
    np.save(root / "masks" / "train00.npy", mask)
    index = read_cache(root)
    expected = np.zeros(64, np.float32)
    expected[[0, 21, 63]] = 1  # default: a patch "contains bone" if any voxel is bone
    np.testing.assert_array_equal(CachedDataset(index, "train")[0]["targets"].numpy(), expected)
    expected[63] = 0  # with a 5 % floor the single voxel no longer counts
    np.testing.assert_array_equal(CachedDataset(index, "train", min_bone_fraction=0.05)[0]["targets"].numpy(), expected)


def test_missing_cache_and_bad_files(tmp_path):
    with pytest.raises(TrainingError, match="does not exist") as exc:
        read_cache(tmp_path / "nope")
    assert "sranet prepare" in str(exc.value)
    (tmp_path / "c").mkdir()
    with pytest.raises(TrainingError, match="cache.json: is missing"):
        read_cache(tmp_path / "c")


def test_wrong_volume_shape_names_the_file(tmp_path, cache_builder):
    root = cache_builder(tmp_path / "c", {"train": (1, 0)})
    np.save(root / "volumes" / "train00.npy", np.zeros((40, 48, 48), np.float32))
    with pytest.raises(TrainingError, match=r"train00.npy: cached volume has shape \(40, 48, 48\)"):
        CachedDataset(read_cache(root), "train")[0]


def test_augmentation_reproducible_and_different_per_epoch(tiny_cache):
    ds = CachedDataset(read_cache(tiny_cache), "train", augment_cfg=AugmentConfig(), seed=7)
    a = ds[3]["volume"]
    b = ds[3]["volume"]
    torch.testing.assert_close(a, b)
    ds.set_epoch(1)
    assert not torch.equal(a, ds[3]["volume"])


def test_flips_move_volume_mask_and_targets_together():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(48, 48, 48)).astype(np.float32)
    mask = np.zeros((48, 48, 48), np.uint8)
    mask[0:12, 0:12, 36:48] = 255  # only patch (0, 0, 3) -> 3
    cfg = AugmentConfig(mode="none", flip_axes=(0, 2), flip_prob=1.0)
    v2, m2 = augment(vol, mask, cfg, rng)
    np.testing.assert_array_equal(v2, vol[::-1, :, ::-1])
    np.testing.assert_array_equal(m2, mask[::-1, :, ::-1])
    from sranet.data.masks import patch_targets

    t = patch_targets(m2, 4, 0.0)
    assert np.flatnonzero(t).tolist() == [16 * 3 + 4 * 0 + 0]  # (3, 0, 0): D and W flipped


@pytest.mark.parametrize("mode", ["crop_zoom", "affine"])
def test_geometric_augmentation_keeps_mask_aligned(mode):
    """A bright cube and its mask are warped by the same transform: the mask still covers the bright voxels."""
    vol = np.zeros((48, 48, 48), np.float32)
    vol[14:34, 14:34, 14:34] = 10.0
    mask = (vol > 5).astype(np.uint8) * 255
    cfg = AugmentConfig(mode=mode, flip_prob=0.0)
    for seed in range(3):
        v2, m2 = augment(vol, mask, cfg, np.random.default_rng(seed))
        assert v2.shape == vol.shape and v2.dtype == np.float32 and m2.dtype == np.uint8
        assert set(np.unique(m2)) <= {0, 255}
        inside = v2[m2 > 0]
        assert inside.size > 0 and np.median(inside) > 5 and np.median(v2[m2 == 0]) < 5


def test_identity_transform_reproduces_input():
    vol = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    mask = (vol > 0).astype(np.uint8) * 255
    cfg = AugmentConfig(mode="crop_zoom", zoom_range=(1.0, 1.0), flip_prob=0.0)
    v2, m2 = augment(vol, mask, cfg, np.random.default_rng(0))
    np.testing.assert_allclose(v2, vol, atol=1e-5)
    np.testing.assert_array_equal(m2, mask)


def test_bad_augment_config():
    with pytest.raises(ConfigError, match="Did you mean 'affine'"):
        AugmentConfig(mode="afine")
    with pytest.raises(ConfigError, match="flip_axes"):
        AugmentConfig(flip_axes=(3,))
