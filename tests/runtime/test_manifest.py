"""Manifest reader: strict columns, validated values, errors that name the file, the line and the fix."""

from pathlib import Path

import pytest

from sranet.data.manifest import write_manifest
from sranet.errors import ManifestError
from sranet.runtime.manifest import COLUMNS, Case, read_manifest, safe_name

HEADER = "case_id,path,label,stage,split,roi,side,lesion_mask"


def _write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_rows_resolves_paths_and_derives_labels(tmp_path):
    path = _write(
        tmp_path,
        f"{HEADER}\n"
        "a1,cases/a1,,3,train,\"1:20,2:30,3:40\",l,lesions/a1.npy\n"
        "b2,/abs/b2.nii.gz,0,,test,,,\n"
        "c3,c3.npy,1,,,,R,\n",
    )
    cases = read_manifest(path)
    assert [c.case_id for c in cases] == ["a1", "b2", "c3"]
    a, b, c = cases
    assert a.path == tmp_path / "cases/a1" and a.label == 1 and a.stage == 3 and a.side == "L"
    assert a.roi == "1:20,2:30,3:40" and a.lesion_mask == tmp_path / "lesions/a1.npy" and a.row == 2
    assert b.path == Path("/abs/b2.nii.gz") and b.label == 0 and b.stage is None and b.split == "test"
    assert c.split is None and c.roi is None and c.lesion_mask is None and c.side == "R"


def test_minimal_columns_and_bom(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffcase_id,path\nx,x.npy\n".encode())
    (case,) = read_manifest(path)
    assert case.label is None and case.path == tmp_path / "x.npy"
    with pytest.raises(ManifestError, match="neither label nor stage"):
        read_manifest(_write(tmp_path, "case_id,path,label\nx,x.npy,\n", "n.csv"), require_labels=True)
    with pytest.raises(ManifestError, match="add a 'label'"):
        read_manifest(path, require_labels=True)


@pytest.mark.parametrize(
    "text, match",
    [
        ("case_id,path,lable\na,a.npy,1\n", r"unknown column 'lable'.*Did you mean 'label'\?"),
        ("case_id,label\na,1\n", "required column 'path' is missing"),
        ("case_id,path,label,label\na,a.npy,1,1\n", "more than once"),
        ("case_id,path,label\na,a.npy,1\nb,b.npy,0\na,c.npy,1\n", "line 4: case id 'a' duplicates the one on line 2"),
        ("case_id,path,label\na/b,a.npy,1\na_b,c.npy,1\n", "also after making them file-name safe"),
        ("case_id,path,label\na,a.npy,2\n", r"line 2: label='2' is not one of 0, 1. Use 0 \(no AVNFH\)"),
        ("case_id,path,stage\na,a.npy,5\n", "stage='5' is not one of 0, 1, 2, 3, 4"),
        ("case_id,path,stage\na,a.npy,II\n", "Use the ARCO stage 0-4"),
        ("case_id,path,label,stage\na,a.npy,0,2\n", "label=0 contradicts stage=2"),
        ("case_id,path,split\na,a.npy,training\n", r"split='training'.*Did you mean 'train'\?"),
        ("case_id,path,side\na,a.npy,left\n", "side='left' must be 'L', 'R'"),
        ("case_id,path\n,a.npy\n", "case_id is empty"),
        ("case_id,path\na,\n", "path is empty"),
        ("case_id,path\na,a.npy,extra\n", "has 3 cells but the header has 2"),
        ("case_id,path\n", "no cases"),
        ("", "manifest is empty"),
        ("case_id,path,roi\na,a.npy,1:2:3\n", "roi='1:2:3' is not a valid ROI"),
    ],
)
def test_errors_name_file_line_and_fix(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError, match=match) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found") as info:
        read_manifest(tmp_path / "nope.csv")
    assert "nope.csv" in str(info.value) and "sranet synth" in str(info.value)
    with pytest.raises(ManifestError, match="not a file"):
        read_manifest(tmp_path)


def test_case_ids_are_sanitised_before_touching_paths():
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("Müller, Hans^2020") == "M_ller_Hans_2020"
    assert safe_name("ok-id_1.2") == "ok-id_1.2"
    assert "/" not in Case("a/../b", Path("x")).name
    with pytest.raises(ManifestError, match="no characters usable"):
        safe_name("///")


def test_write_manifest_round_trip(tmp_path):
    rows = [{"case_id": "a", "path": "a.npy", "stage": 2, "label": 1, "split": "val", "roi": "0:4,0:4,0:4"},
            {"case_id": "b", "path": "b.npy", "stage": 0, "label": 0, "split": "train"}]
    path = write_manifest(tmp_path / "m.csv", rows)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [c for c in COLUMNS if c in ("case_id", "path", "label", "stage", "split", "roi")]
    a, b = read_manifest(path)
    assert (a.stage, a.label, a.split, a.roi) == (2, 1, "val", "0:4,0:4,0:4") and b.roi is None
    with pytest.raises(ManifestError, match="unknown column"):
        write_manifest(tmp_path / "x.csv", [{"case_id": "a", "path": "p", "grade": 1}])
