"""`sranet evaluate` through CliRunner: bad checkpoint and cache paths give exit 1 and a clear message."""

import torch
from typer.testing import CliRunner

from sranet.cli.main import app
from sranet.config import ModelConfig, PreprocessConfig
from tests.helpers import write_small_cache

runner = CliRunner()


def test_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "best.pt"), "--cache", str(tmp_path), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1
    assert "best.pt: checkpoint file does not exist" in result.output and "sranet train" in result.output


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": 1}, tmp_path / "x.pt")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "x.pt"), "--cache", str(tmp_path), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "is not an sranet checkpoint" in result.output


def test_evaluate_end_to_end(tmp_path):
    from sranet.model.checkpoint import save_checkpoint
    from sranet.model.sranet import SRANet

    cache = write_small_cache(tmp_path / "cache")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", model=SRANet(ModelConfig.preset("tiny")),
                           preprocess_config=PreprocessConfig(output_size=48), threshold=0.5, epoch=1, metrics={},
                           train_config={"model": "tiny"})
    out = tmp_path / "e"
    result = runner.invoke(app, ["evaluate", str(ckpt), "--cache", str(cache), "--out", str(out), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "val: n=4" in result.output and (out / "metrics.json").is_file() and (out / "roc.png").is_file()
    result = runner.invoke(app, ["evaluate", str(ckpt), "--cache", str(cache), "--out", str(out), "--split", "tst"])
    assert result.exit_code == 1 and "split 'tst' has no cases" in result.output
