"""Training end to end on the tiny config: run files, checkpoint contents, resume, and the refusals."""

import json

import numpy as np
import pytest
import torch

from sranet.errors import ArtifactError, ConfigError, TrainingError
from sranet.model.checkpoint import FORMAT, load_checkpoint
from sranet.train.config import TrainConfig
from sranet.train.loop import demo_train_config, train

FAST = TrainConfig(model="tiny", epochs=2, lr=3e-3, batch_size=4, seed=1)


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_run_writes_checkpoints_and_metrics(run):
    result, out = run
    assert result.best_path == out / "best.pt" and result.best_path.is_file() and result.last_path.is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("lr", "train_loss", "val_loss", "val_auc", "val_threshold", "val_sensitivity", "val_confusion_matrix"):
        assert key in lines[0]
    assert 0 <= result.best_val_auc <= 1 and 1 <= result.best_epoch <= 2


def test_checkpoint_has_the_contract_keys(run):
    result, _ = run
    raw = torch.load(result.best_path, weights_only=True)
    for key in ("format", "model_state", "model_config", "preprocess_config", "threshold", "epoch", "metrics",
                "train_config", "optimizer_state", "scheduler_state"):
        assert key in raw, key
    assert raw["format"] == FORMAT and raw["train_config"]["model"] == "tiny"
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.threshold == pytest.approx(result.threshold)
    assert ckpt.threshold == pytest.approx(ckpt.metrics["val_threshold"])
    assert ckpt.preprocess_config.output_size == 48
    model = ckpt.build_model()
    assert not model.training
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 48, 48, 48))
    assert out.attention.shape == (1, 64)


def test_resume_continues_exactly(tiny_cache, tmp_path, run):
    """2 epochs, then resume to 3 == 3 epochs straight (weights, optimizer, scheduler, data order restored)."""
    three = FAST.replace(epochs=3)
    straight = train(three, tiny_cache, tmp_path / "a")
    train(FAST, tiny_cache, tmp_path / "b")
    resumed = train(three, tiny_cache, tmp_path / "b", resume=True)
    a, b = load_checkpoint(straight.last_path), load_checkpoint(resumed.last_path)
    assert b.epoch == 3 and len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 3
    for k in a.model_state:
        torch.testing.assert_close(a.model_state[k], b.model_state[k], rtol=1e-5, atol=1e-6)
    assert a.scheduler_state["last_epoch"] == b.scheduler_state["last_epoch"] == 3


def test_resume_with_another_model_is_refused(run, tiny_cache, tmp_path):
    import shutil

    _, out = run
    shutil.copytree(out, tmp_path / "r")
    raw = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    raw["train_config"]["model"] = "small"
    torch.save(raw, tmp_path / "r" / "last.pt")
    with pytest.raises(TrainingError, match="trained with model='small'; cannot resume it with model='tiny'"):
        train(FAST.replace(epochs=3), tiny_cache, tmp_path / "r", resume=True)


def test_resume_with_other_lr_is_refused(run, tiny_cache, tmp_path):
    import shutil

    _, out = run
    shutil.copytree(out, tmp_path / "r")
    with pytest.raises(TrainingError, match="lr=0.003; cannot resume it with lr=0.01"):
        train(FAST.replace(epochs=3, lr=0.01), tiny_cache, tmp_path / "r", resume=True)


def test_checkpoint_without_instance_weight_resumes_without_the_term(run, tiny_cache, tmp_path):
    """A checkpoint that does not record instance_weight trained without the instance term, whatever the default."""
    import shutil

    _, out = run
    shutil.copytree(out, tmp_path / "r")
    raw = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    del raw["train_config"]["instance_weight"]
    torch.save(raw, tmp_path / "r" / "last.pt")
    assert FAST.instance_weight > 0
    with pytest.raises(TrainingError, match="instance_weight=0.0; cannot resume it with instance_weight=0.5"):
        train(FAST.replace(epochs=3), tiny_cache, tmp_path / "r", resume=True)
    resumed = train(FAST.replace(epochs=3, instance_weight=0.0), tiny_cache, tmp_path / "r", resume=True)
    assert "train_loss_instance" not in resumed.history[-1]


def test_lr_steps_by_gamma(tiny_cache, tmp_path):
    train(FAST.replace(epochs=3, lr_step_epochs=1, lr=1e-3, val_every=5), tiny_cache, tmp_path)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(lrs, [1e-3, 1e-4, 1e-5])


def test_missing_cache(tmp_path):
    with pytest.raises(TrainingError, match="cache folder does not exist"):
        train(FAST, tmp_path / "missing", tmp_path / "run")


def test_empty_split(tmp_path, cache_builder):
    root = cache_builder(tmp_path / "c", {"train": (2, 2), "test": (1, 1)})
    with pytest.raises(TrainingError, match="'val' split is empty"):
        train(FAST, root, tmp_path / "run")


def test_one_class_in_validation(tmp_path, cache_builder):
    root = cache_builder(tmp_path / "c", {"train": (2, 2), "val": (2, 0)})
    with pytest.raises(TrainingError, match="'val' split has only label 0"):
        train(FAST, root, tmp_path / "run")


def test_non_finite_loss(tmp_path, cache_builder):
    root = cache_builder(tmp_path / "c", {"train": (1, 1), "val": (1, 1)})
    vol = np.load(root / "volumes" / "train00.npy")
    vol[0, 0, 0] = np.nan
    np.save(root / "volumes" / "train00.npy", vol)
    with pytest.raises(TrainingError, match="non-finite"):
        train(FAST.replace(augment=False), root, tmp_path / "run")


def test_cache_size_must_match_model(tiny_cache, tmp_path):
    with pytest.raises(TrainingError, match="48\\^3 but model 'small' takes 64\\^3"):
        train(FAST.replace(model="small"), tiny_cache, tmp_path / "run")


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"model": "papr"}, "Did you mean 'paper'"), ({"alpha": 1.2}, "alpha"), ({"epochs": 0}, "epochs"),
     ({"amp": "fp8"}, "amp"), ({"lr": -1.0}, "lr")],
)
def test_bad_train_config(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes)


def test_fp16_amp_on_cpu_is_refused(tiny_cache, tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train(FAST.replace(amp="fp16", epochs=1), tiny_cache, tmp_path / "run")


def test_bf16_amp_on_cpu_runs(tiny_cache, tmp_path):
    result = train(FAST.replace(amp="bf16", epochs=1), tiny_cache, tmp_path / "run")
    assert result.best_path.is_file()


def test_train_config_round_trip():
    cfg = demo_train_config()
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})


def test_checkpoint_load_errors(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="junk.pt: is not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ArtifactError, match="is not an sranet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_crash_while_writing_best_is_redone_on_resume(tiny_cache, tmp_path, monkeypatch):
    """A failure writing best.pt (disk full, kill) must not leave last.pt claiming that epoch is done: resume redoes
    it, and best.pt ends up holding the epoch the run reports as best."""
    import sranet.model.checkpoint as checkpoint

    real = checkpoint.save_checkpoint
    calls = {"best": 0}

    def failing_once(path, **kwargs):
        if path.name == "best.pt" and calls["best"] == 0:
            calls["best"] += 1
            raise OSError("No space left on device")
        return real(path, **kwargs)

    cfg = FAST.replace(epochs=2, val_every=2)  # epoch 1 is not validated, epoch 2 is and becomes the best
    monkeypatch.setattr(checkpoint, "save_checkpoint", failing_once)
    with pytest.raises(OSError, match="No space"):
        train(cfg, tiny_cache, tmp_path)
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    result = train(cfg, tiny_cache, tmp_path, resume=True)
    assert result.best_epoch == 2 and load_checkpoint(result.best_path).epoch == 2
    assert load_checkpoint(result.last_path).epoch == 2
    assert [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_resume_refuses_a_setting_the_checkpoint_predates_unless_it_is_the_default(tmp_path):
    """A run saved before a setting existed ran at that setting's default: resuming it with another value is the
    same silent change as editing a recorded setting."""
    from sranet.train.config import TrainConfig
    from sranet.train.run_state import _check_resume

    stored = TrainConfig(model="tiny").to_dict()
    for key in ("sampler", "init", "select"):
        stored.pop(key)
    _check_resume(stored, TrainConfig(model="tiny"), tmp_path / "last.pt")
    with pytest.raises(TrainingError, match=r"was trained with sampler='random'; cannot resume it with "
                                            r"sampler='balanced'"):
        _check_resume(stored, TrainConfig(model="tiny", sampler="balanced"), tmp_path / "last.pt")
