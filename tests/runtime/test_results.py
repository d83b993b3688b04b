"""JSONL results: atomic appends, a crash's partial last line is dropped, reruns skip what is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from sranet.errors import InputError
from sranet.runtime.results import ResultsWriter, case_key, read_results


def test_case_key_sanitises_ids_and_hashes_paths(tmp_path):
    assert case_key("case 01/../x", None) == "case_01_.._x"
    assert case_key("abc-1.2", None) == "abc-1.2"
    key = case_key(None, tmp_path / "DOE^JOHN" / "series")
    assert key.startswith("path-") and len(key) == 17 and "DOE" not in key
    assert key == case_key(None, str(tmp_path / "DOE^JOHN" / "series"))  # stable for the same path
    with pytest.raises(InputError, match="no characters usable"):  # the rule prepare's file names follow too
        case_key("...", tmp_path / "a")
    with pytest.raises(InputError):
        case_key(None, None)


def test_write_then_resume(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as w:
        w.write({"case": "a", "probability": 0.1})
        w.write({"case": "b", "error": "VolumeError", "message": "bad"})
    records, valid = read_results(out)
    assert [r["case"] for r in records] == ["a", "b"] and valid == out.stat().st_size
    with ResultsWriter(out) as w:
        assert w.done == {"a", "b"}
    with ResultsWriter(out, retry_failed=True) as w:
        assert w.done == {"a"}
        w.write({"case": "b", "probability": 0.7})
    records, _ = read_results(out)
    assert [r["case"] for r in records] == ["a", "b", "b"]  # the later line supersedes


@pytest.mark.parametrize("tail", [b'{"case": "c", "probab', b'{"case": "c"', b'garbage\n'])
def test_partial_last_line_is_ignored_and_truncated(tmp_path, tail):
    out = tmp_path / "r.jsonl"
    good = b'{"case": "a"}\n{"case": "b"}\n'
    out.write_bytes(good + tail)
    records, valid = read_results(out)
    assert [r["case"] for r in records] == ["a", "b"] and valid == len(good)
    with ResultsWriter(out) as w:
        assert w.truncated_bytes == len(tail) and w.done == {"a", "b"}
        w.write({"case": "c"})
    assert out.read_bytes() == good + b'{"case": "c"}\n'


def test_bad_line_in_the_middle_is_an_error(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_bytes(b'{"case": "a"}\nnot json\n{"case": "b"}\n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        ResultsWriter(out)


def test_killed_writer_loses_nothing_written(tmp_path):
    """A process killed mid-run leaves only complete lines (each is one write + fsync) and resumes cleanly."""
    out = tmp_path / "r.jsonl"
    script = textwrap.dedent(f"""
        import os, signal
        from sranet.runtime.results import ResultsWriter
        w = ResultsWriter({str(out)!r})
        for n in range(5):
            w.write({{"case": f"c{{n}}", "payload": "x" * 5000}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode != 0
    records, valid = read_results(out)
    assert [r["case"] for r in records] == [f"c{n}" for n in range(5)] and valid == out.stat().st_size
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_record_needs_case(tmp_path):
    with ResultsWriter(tmp_path / "r.jsonl") as w, pytest.raises(InputError):
        w.write({"probability": 0.3})
    assert os.path.getsize(tmp_path / "r.jsonl") == 0


def test_folder_or_binary_file_as_results_is_an_input_error(tmp_path):
    """--out pointing at a folder or at a non-text file: a typed error naming it, never an OSError/UnicodeDecodeError."""
    with pytest.raises(InputError, match="is a folder"):
        ResultsWriter(tmp_path)
    binary = tmp_path / "scan.jsonl"
    binary.write_bytes(b'{"case": "a"}\n\xff\xfe\x00binary\n{"case": "b"}\n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        ResultsWriter(binary)
    assert binary.read_bytes().startswith(b'{"case": "a"}\n\xff')  # not truncated or touched
