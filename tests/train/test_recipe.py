"""The training recipe's parts: class-balanced sampling, the lesion-preserving crop-zoom, the alpha schedule,
the lr warm-up and gradient clipping inside a real run."""

import json

import numpy as np
import pytest

from sranet.data.augment import AugmentConfig, augment, random_transform
from sranet.data.dataset import BalancedSampler
from sranet.errors import ConfigError, TrainingError
from sranet.train.config import TrainConfig
from sranet.train.loop import train


def test_balanced_sampler_pairs_classes():
    labels = np.array([0] * 9 + [1] * 3)  # 3:1 imbalance
    sampler = BalancedSampler(labels, seed=3)
    order = list(sampler)
    assert len(order) == len(sampler) == 12
    drawn = labels[order]
    assert drawn.sum() == 6  # half positives
    assert all(drawn[i] + drawn[i + 1] == 1 for i in range(0, 12, 2))  # every pair (so every even batch) balanced
    positives = [i for i in order if labels[i] == 1]
    assert sorted(positives) == [9, 9, 10, 10, 11, 11]  # minority cycled evenly: each twice
    assert len(set(i for i in order if labels[i] == 0)) == 6  # majority drawn without repeats


def test_balanced_sampler_depends_on_seed_and_epoch_only():
    labels = np.array([0, 1] * 8)
    a, b = BalancedSampler(labels, seed=1), BalancedSampler(labels, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)


def test_balanced_sampler_shards_pairs_across_ranks():
    labels = np.array([0] * 7 + [1] * 6)
    shards = [list(BalancedSampler(labels, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 8  # 7 pairs padded to 8 so ranks step together
    for shard in shards:
        assert labels[shard].sum() == len(shard) // 2


def test_balanced_sampler_needs_both_classes():
    with pytest.raises(TrainingError, match="only label 0"):
        BalancedSampler(np.zeros(4, int))


def test_head_crop_zoom_always_holds_the_central_box():
    cfg = AugmentConfig(mode="head_crop_zoom", keep_fraction=0.8)
    rng = np.random.default_rng(0)
    for _ in range(500):
        theta = random_transform(cfg, rng)
        half, centre = np.diag(theta[:, :3]), theta[:, 3]
        assert np.allclose(half, half[0])
        assert np.all(centre - half <= -0.8 + 1e-9) and np.all(centre + half >= 0.8 - 1e-9)


def _lesion_volume(size: int = 48):
    """Bright head with a dark lesion touching the edge of the central 80% box (like a subchondral lesion)."""
    vol = np.zeros((size,) * 3, np.float32)
    lesion = np.zeros((size,) * 3, np.uint8)
    vol[4:-4, 4:-4, 4:-4] = 5.0
    lesion[5:12, 20:28, 20:28] = 1  # rows 5..11 of 48: starts at 0.104 of the edge, inside the 0.1..0.9 box
    vol[lesion > 0] = -5.0
    return vol, lesion


def test_head_crop_zoom_keeps_the_lesion_and_crop_zoom_can_cut_it():
    vol, lesion = _lesion_volume()
    kept = {}
    for mode in ("head_crop_zoom", "crop_zoom"):
        cfg = AugmentConfig(mode=mode, flip_prob=0.0)
        fractions = []
        for seed in range(40):
            rng = np.random.default_rng(seed)
            theta = random_transform(cfg, np.random.default_rng(seed))
            zoom = 1.0 / theta[0, 0]
            _, warped = augment(vol, lesion * 255, cfg, rng)  # the lesion travels like a mask
            fractions.append((warped > 0).sum() / (lesion.sum() * zoom**3))
        kept[mode] = min(fractions)
    assert kept["head_crop_zoom"] > 0.8  # never cut (nearest resampling of a small box varies a little)
    assert kept["crop_zoom"] < 0.75  # the reference crop cuts a third of it away for some seeds


def test_alpha_schedule():
    cfg = TrainConfig(alpha=0.9, alpha_start=1.0, alpha_ramp_epochs=4)
    assert [cfg.alpha_at(e) for e in range(6)] == pytest.approx([1.0, 0.975, 0.95, 0.925, 0.9, 0.9])
    assert TrainConfig(alpha=0.7).alpha_at(0) == 0.7  # no ramp: constant
    with pytest.raises(ConfigError, match="alpha_start"):
        TrainConfig(alpha_start=1.5)
    with pytest.raises(ConfigError, match="grad_clip"):
        TrainConfig(grad_clip=-1.0)
    with pytest.raises(ConfigError, match="Did you mean 'balanced'"):
        TrainConfig(sampler="balance")


def test_recipe_options_in_a_run(tiny_cache, tmp_path):
    cfg = TrainConfig(model="tiny", epochs=2, lr=3e-3, batch_size=4, seed=0, init="kaiming", warmup_epochs=1,
                      grad_clip=1e-3, sampler="balanced", alpha=0.8, alpha_start=1.0, alpha_ramp_epochs=2,
                      augment_mode="head_crop_zoom", instance_weight=0.5)
    result = train(cfg, tiny_cache, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["alpha"] for r in lines] == pytest.approx([1.0, 0.9])
    for r in lines:  # the total holds the instance term: alpha * l_c + (1 - alpha) * l_s + 0.5 * l_i
        assert r["train_loss_instance"] > 0
        parts = r["alpha"] * r["train_loss_classification"] + (1 - r["alpha"]) * r["train_loss_structure"]
        assert r["train_loss"] == pytest.approx(parts + 0.5 * r["train_loss_instance"], rel=1e-5)
        assert 0 <= r["val_bottom_patch_hit_rate"] <= 1
    assert lines[0]["grad_clipped_share"] == 1.0  # a tiny clip clips every step
    assert lines[0]["grad_norm_total"] > 1e-3
    assert lines[0]["train_volumes"] == 12 and 0 < lines[0]["train_target_share"] <= 1
    assert {"conv1", "conv2", "embed"} <= set(lines[1]["dead_relu"])
    assert lines[1]["attn_patches"] == 64 and 1 <= lines[1]["attn_effective_patches"] <= 64
    assert (tmp_path / "plots" / "diagnostics.png").is_file() and result.best_path.is_file()


@pytest.mark.integration
def test_select_by_val_loss_and_on_epoch(tiny_cache, tmp_path):
    seen = []

    def on_epoch(record, model):
        seen.append((record["epoch"], model.training))

    cfg = TrainConfig(model="tiny", epochs=3, lr=3e-3, batch_size=4, seed=2, select="val_loss", augment=False)
    result = train(cfg, tiny_cache, tmp_path, on_epoch=on_epoch)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["val_loss_classification"] for r in lines]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert seen == [(1, False), (2, False), (3, False)]
    with pytest.raises(ConfigError, match="Did you mean 'val_loss'"):
        TrainConfig(select="val_los")


def test_select_rules_rank_validated_epochs():
    from sranet.train.loop import _better

    first = {"auc": -np.inf, "val_loss": np.inf, "epoch": -1, "threshold": 0.5}
    a = {"auc": 0.85, "auc_visible": 1.0, "val_loss": 0.6, "val_loss_classification": 0.5}
    b = {"auc": 0.87, "auc_visible": 0.97, "val_loss": 0.5, "val_loss_classification": 0.6}
    c = {"auc": 0.86, "auc_visible": 1.0, "val_loss": 0.4, "val_loss_classification": 0.4}
    assert all(_better(x, first, rule) for x in (a, b, c) for rule in ("val_auc", "val_auc_visible", "val_loss"))
    assert _better(b, a, "val_auc") and not _better(a, b, "val_auc")
    assert _better(a, b, "val_auc_visible") and not _better(b, a, "val_auc_visible")
    assert _better(c, a, "val_auc_visible")  # same visible AUC: the higher AUC wins
    assert _better(c, b, "val_loss") and not _better(b, a, "val_loss")
    # a best-so-far from a checkpoint that has no visible AUC counts its AUC
    assert _better(a, {"auc": 0.9, "val_loss": 1.0}, "val_auc_visible")


def test_channels_last_trains_the_same_network(tiny_cache, tmp_path):
    import torch

    from sranet.model.checkpoint import load_checkpoint

    cfg = TrainConfig(model="tiny", epochs=1, lr=3e-3, batch_size=4, seed=0, augment=False, init="kaiming",
                      select="val_auc_visible")
    plain = train(cfg, tiny_cache, tmp_path / "plain")
    fast = train(cfg.replace(channels_last=True), tiny_cache, tmp_path / "cl")
    a, b = (load_checkpoint(r.last_path).model_state for r in (plain, fast))
    assert a.keys() == b.keys()
    assert all(v.is_contiguous() for v in b.values())  # the checkpoint does not depend on the training layout
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3), k
    assert fast.history[0]["val_auc"] == pytest.approx(plain.history[0]["val_auc"], abs=1e-6)


def test_epoch_line_shows_the_loss_terms_it_sums():
    from sranet.train.loop import _epoch_line

    record = {"epoch": 3, "lr": 1e-3, "train_loss": 0.9, "train_loss_classification": 0.6,
              "train_loss_structure": 0.3, "seconds": 5.0}
    assert "(l_c 0.6000, l_s 0.3000)  (5 s)" in _epoch_line(record, 10)
    line = _epoch_line(record | {"train_loss_instance": 0.42}, 10)
    assert "(l_c 0.6000, l_s 0.3000, l_i 0.4200)" in line
