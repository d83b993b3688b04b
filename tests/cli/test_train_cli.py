"""`sranet train` through CliRunner: a short run on a hand-made cache, and the refusals (exit 1, one Error line)."""

import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from tests.helpers import write_small_cache

runner = CliRunner()


def test_train_runs_and_resumes(tmp_path):
    cache = write_small_cache(tmp_path / "cache")
    out = tmp_path / "run"
    args = ["train", "--cache", str(cache), "--out", str(out), "--model", "tiny", "--batch-size", "4", "--lr", "1e-3"]
    result = runner.invoke(app, [*args, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "best epoch 1" in result.output and (out / "best.pt").is_file()
    result = runner.invoke(app, [*args, "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "epoch 1/2" not in result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_missing_cache_dir(tmp_path):
    result = runner.invoke(app, ["train", "--cache", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "cache folder does not exist" in result.output
    assert "sranet prepare" in result.output


def test_bad_model_name_suggests(tmp_path):
    cache = write_small_cache(tmp_path / "cache")
    result = runner.invoke(app, ["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--model", "smal"])
    assert result.exit_code == 1
    assert "model='smal' is not one of" in result.output and "Did you mean 'small'?" in result.output


@pytest.mark.parametrize(("option", "value", "message"), [("--alpha", "1.5", "alpha"), ("--amp", "fp32", "amp="),
                                                          ("--epochs", "0", "epochs")])
def test_bad_values(tmp_path, option, value, message):
    result = runner.invoke(app, ["train", "--cache", str(tmp_path), "--out", str(tmp_path / "run"), option, value])
    assert result.exit_code == 1 and "Error:" in result.output and message in result.output


def test_resume_without_last_checkpoint(tmp_path):
    cache = write_small_cache(tmp_path / "cache")
    result = runner.invoke(app, ["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--model", "tiny",
                                 "--resume"])
    assert result.exit_code == 1 and "--resume needs" in result.output and "last.pt" in result.output


def test_cuda_without_gpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    cache = write_small_cache(tmp_path / "cache")
    result = runner.invoke(app, ["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--model", "tiny",
                                 "--device", "cuda"])
    assert result.exit_code == 1 and "sees no CUDA device" in result.output
