"""``sranet synth --anatomy pelvis`` through CliRunner: whole studies, their truth, and the options that go with it."""

import pydicom
import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from sranet.data.synthetic_pelvis_dataset import read_truth
from sranet.runtime.manifest import read_manifest

runner = CliRunner()


@pytest.mark.integration
def test_synth_pelvis_writes_studies_with_truth(tmp_path):
    out = tmp_path / "ds"
    result = runner.invoke(app, ["synth", "--anatomy", "pelvis", "-o", str(out), "-n", "2", "--seed", "4",
                                 "--negatives", "0"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 synthetic pelvis studies" in result.output
    cases = read_manifest(out / "manifest.csv")
    truth = read_truth(out / "truth.csv")
    assert len(truth) == 4 and {r["side"] for r in truth} == {"L", "R"}
    assert all(c.roi is None for c in cases) and 1 <= len(cases) <= 4
    files = sorted(cases[0].path.glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert 150 <= len(files) <= 170 and ds.Rows == ds.Columns == 256 and ds.BodyPartExamined == "PELVIS"


def test_synth_options_belong_to_one_anatomy(tmp_path):
    size = runner.invoke(app, ["synth", "--anatomy", "pelvis", "-o", str(tmp_path / "a"), "--size", "64"])
    assert size.exit_code == 1 and "--matrix" in size.output
    matrix = runner.invoke(app, ["synth", "-o", str(tmp_path / "b"), "--matrix", "512"])
    assert matrix.exit_code == 1 and "--anatomy pelvis" in matrix.output
    bad = runner.invoke(app, ["synth", "--anatomy", "pelvic", "-o", str(tmp_path / "c")])
    assert bad.exit_code == 1 and "Did you mean 'pelvis'?" in bad.output
    wrong = runner.invoke(app, ["synth", "--anatomy", "pelvis", "-o", str(tmp_path / "d"), "--matrix", "384"])
    assert wrong.exit_code == 1 and "--matrix" in wrong.output
