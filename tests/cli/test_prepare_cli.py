"""``sranet prepare`` through CliRunner: missing manifest, unknown column, unreadable case, rerun, bad options."""

import json

from typer.testing import CliRunner

from sranet.cli.main import app
from sranet.data.synthetic_dataset import write_dataset

runner = CliRunner()


def test_missing_manifest(tmp_path):
    result = runner.invoke(app, ["prepare", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "none.csv: manifest not found" in result.output


def test_unknown_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,path,lable\na,a.npy,1\n")
    result = runner.invoke(app, ["prepare", "-m", str(manifest), "-o", str(tmp_path / "c"), "--model", "tiny"])
    assert result.exit_code == 1
    assert "unknown column 'lable'" in result.output and "Did you mean 'label'?" in result.output


def test_unreadable_case_is_recorded_and_the_rest_prepared(tmp_path):
    manifest = write_dataset(tmp_path / "ds", 2, seed=1, shape=(16, 24, 24))
    text = manifest.read_text().splitlines()
    text.insert(2, "ghost,cases/does_not_exist,1,2,train,,,")
    manifest.write_text("\n".join(text) + "\n")
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["prepare", "-m", str(manifest), "-o", str(cache), "--size", "16"])
    assert result.exit_code == 1
    assert "prepared 2 case(s)" in result.output and "1 failed" in result.output
    assert "failed ghost:" in result.output and "failures.jsonl" in result.output
    failure = json.loads((cache / "failures.jsonl").read_text())
    assert failure["case_id"] == "ghost" and "does_not_exist" in failure["message"]
    rerun = runner.invoke(app, ["prepare", "-m", str(manifest), "-o", str(cache), "--size", "16"])
    assert rerun.exit_code == 1 and "skipped 2 already cached" in rerun.output


def test_success_and_option_conflicts(tmp_path):
    manifest = write_dataset(tmp_path / "ds", 2, seed=2, shape=(16, 24, 24))
    ok = runner.invoke(app, ["prepare", "-m", str(manifest), "-o", str(tmp_path / "c"), "--model", "tiny"])
    assert ok.exit_code == 0, ok.output
    assert "prepared 2 case(s), skipped 0" in ok.output
    assert json.loads((tmp_path / "c" / "cache.json").read_text())["preprocess"]["output_size"] == 48
    both = runner.invoke(app, ["prepare", "-m", str(manifest), "-o", str(tmp_path / "d"), "--model", "tiny",
                               "--size", "32"])
    assert both.exit_code == 1 and "give only one" in both.output
    typo = runner.invoke(app, ["prepare", "-m", str(manifest), "-o", str(tmp_path / "e"), "--model", "smal"])
    assert typo.exit_code == 1 and "Did you mean 'small'?" in typo.output
