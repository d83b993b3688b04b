"""``sranet synth`` through CliRunner: exit codes and messages."""

import pydicom
from typer.testing import CliRunner

from sranet.cli.main import app
from sranet.runtime.manifest import read_manifest

runner = CliRunner()


def test_synth_writes_a_dataset(tmp_path):
    out = tmp_path / "ds"
    result = runner.invoke(app, ["synth", "--out", str(out), "--cases", "3", "--seed", "5", "--size", "16x24x24",
                                 "--stage-mix", "0:1,3:2"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 synthetic cases" in result.output
    cases = read_manifest(out / "manifest.csv")
    assert sorted(c.stage for c in cases) == [0, 3, 3] and all(c.roi and c.side for c in cases)
    files = sorted(cases[0].path.glob("*.dcm"))
    assert len(files) == 16 and pydicom.dcmread(files[0]).Rows == 24
    assert all(c.lesion_mask.is_file() for c in cases) and (out / "synth.json").is_file()


def test_synth_refuses_to_overwrite_and_bad_options(tmp_path):
    out = tmp_path / "ds"
    assert runner.invoke(app, ["synth", "-o", str(out), "-n", "1", "--size", "16"]).exit_code == 0
    again = runner.invoke(app, ["synth", "-o", str(out), "-n", "1", "--size", "16"])
    assert again.exit_code == 1 and "already exists" in again.output and "--overwrite" in again.output
    assert runner.invoke(app, ["synth", "-o", str(out), "-n", "1", "--size", "16", "--overwrite"]).exit_code == 0
    bad_mix = runner.invoke(app, ["synth", "-o", str(tmp_path / "b"), "--stage-mix", "0:1,6:1"])
    assert bad_mix.exit_code == 1 and "Error: --stage-mix item '6:1'" in bad_mix.output
    bad_size = runner.invoke(app, ["synth", "-o", str(tmp_path / "c"), "--size", "8x8x8"])
    assert bad_size.exit_code == 1 and "--size '8x8x8'" in bad_size.output
    none = runner.invoke(app, ["synth", "-o", str(tmp_path / "d"), "--cases", "0"])
    assert none.exit_code == 1 and "--cases 0" in none.output
