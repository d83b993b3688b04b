"""Library-level guards behind the robustness suite: nothing non-finite reaches the model or a results file, the
results file is locked and must be a regular file, work is bounded (memory per case, threads, batch), ROIs that
reach past the volume are flagged, and one case-key rule serves predict and prepare."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.errors import CorruptPixelDataError, GeometryError, InputError, VolumeTooLargeError
from sranet.runtime.limits import DEFAULT_MAX_VOLUME_GIB, check_volume_bytes, max_threads
from sranet.runtime.preprocess import normalize, preprocess
from sranet.runtime.results import ResultsWriter, case_key, safe_name
from sranet.runtime.roi import parse_roi, roi_clipped
from sranet.runtime.volume import Volume
from tests.helpers import phantom_hu


def _volume(**kw) -> Volume:
    return Volume(hu=phantom_hu((20, 40, 40)), spacing_mm=(2.0, 0.8, 0.8), **kw)


# -- nothing non-finite reaches the model ----------------------------------------------------------------------------
def test_an_in_memory_volume_with_a_nan_voxel_is_refused_not_zeroed():
    """The normaliser's std would be NaN and the whole input zeros: the model would answer about a blank volume."""
    volume = _volume()
    volume.hu[10, 20, 20] = np.nan
    cfg = PreprocessConfig(output_size=48)
    with pytest.raises(CorruptPixelDataError, match="NaN or infinite voxels inside the ROI"):
        preprocess(volume, cfg)
    assert preprocess(volume, cfg, roi=parse_roi("0:8,0:40,0:40")).input.shape == (48, 48, 48)  # outside the box
    with pytest.raises(CorruptPixelDataError, match="never given them"):
        normalize(np.full((4, 4, 4), np.nan, np.float32), cfg)


@pytest.mark.parametrize("field, value, words", [
    ("origin_mm", (np.nan, 0.0, 0.0), "origin_mm"),
    ("spacing_mm", (2.0, np.inf, 0.8), "spacing_mm"),
    ("spacing_mm", (2.0, 0.0, 0.8), "spacing_mm"),
    ("direction", np.diag([1.0, 2.0, 1.0]), "direction"),
])
def test_geometry_that_is_not_finite_is_refused(field, value, words):
    volume = _volume()
    setattr(volume, field, value)
    with pytest.raises(GeometryError, match=words):
        preprocess(volume, PreprocessConfig(output_size=48))


def test_a_record_that_is_not_json_becomes_the_cases_failure_and_the_batch_goes_on(tmp_path, tiny_artifacts):
    from sranet.runtime.batch import cases_from, predict_batch
    from sranet.runtime.predictor import Predictor

    paths = []
    for n in range(2):
        paths.append(tmp_path / f"v{n}.npy")
        np.save(paths[-1], phantom_hu((20, 40, 40), seed=n))
    out = tmp_path / "r.jsonl"
    nan_for_first = lambda case: {"label": float("nan") if case.source == paths[0] else 1.0}  # noqa: E731
    with Predictor.from_artifact(tiny_artifacts[0], threads=1) as predictor:
        summary = predict_batch(predictor, cases_from(paths, spacing_mm=(1.0, 1.0, 1.0), roi="whole"), out,
                                annotate=nan_for_first)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert (summary.predicted, summary.failed) == (1, 1) and len(records) == 2
    assert records[0]["error"] == "InputError" and "field 'label' is nan" in records[0]["message"]
    assert records[1]["label"] == 1.0 and "probability" in records[1]


# -- the results file ------------------------------------------------------------------------------------------------
def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as first:
        first.write({"case": "a"})
        with pytest.raises(InputError, match="is being written by another sranet run"):
            ResultsWriter(out)
    with ResultsWriter(out) as again:  # the lock goes with the writer
        assert again.done == {"a"}


def test_a_second_process_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "r.jsonl"
    script = textwrap.dedent(f"""
        import sys, time
        from sranet.runtime.results import ResultsWriter
        with ResultsWriter({str(out)!r}) as w:
            w.write({{"case": "a"}})
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match="another sranet run"):
            ResultsWriter(out)
    finally:
        proc.communicate("\n", timeout=30)
    with ResultsWriter(out) as w:
        assert w.done == {"a"}


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/full", "fifo", "folder"])
def test_results_must_be_a_regular_file(tmp_path, target):
    if target == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    elif target == "folder":
        target = tmp_path
    with pytest.raises(InputError, match="is not a regular file|is a folder"):
        ResultsWriter(target)


def test_records_are_strict_json_and_name_the_bad_field():
    with pytest.raises(InputError, match="field 'top_patches.0.patient_mm.1' is nan"):
        ResultsWriter.encode({"case": "a", "top_patches": [{"patient_mm": [1.0, float("nan"), 2.0]}]})
    with pytest.raises(InputError, match="field 'p' is inf"):
        ResultsWriter.encode({"case": "a", "p": np.float32("inf")})
    assert ResultsWriter.encode({"case": "a", "p": np.float32(0.5)}) == b'{"case": "a", "p": 0.5}\n'


def test_a_killed_lock_holder_releases_the_file(tmp_path):
    out = tmp_path / "r.jsonl"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.close(fd)  # a process that dies closes its files: the lock goes with them
    with ResultsWriter(out) as w:
        assert w.done == set()


# -- bounded work ----------------------------------------------------------------------------------------------------
def test_memory_budget_refuses_with_the_numbers():
    check_volume_bytes((512, 512, 1000), None)  # 1 GiB: fine by default
    with pytest.raises(VolumeTooLargeError, match=r"2600x1024x1024 voxels, 10.16 GiB .* budget of 4 GiB"):
        check_volume_bytes((2600, 1024, 1024), None)
    with pytest.raises(VolumeTooLargeError, match="budget of 0.5 GiB"):
        check_volume_bytes((512, 512, 1000), 0.5)
    assert DEFAULT_MAX_VOLUME_GIB == 4.0
    with pytest.raises(InputError, match="max_gib=0"):
        check_volume_bytes((1, 1, 1), 0)


def test_thread_counts_are_bounded(tiny_artifacts):
    from sranet.runtime.backends.base import open_backend

    with pytest.raises(InputError, match=f"at most {max_threads()}"):
        open_backend(tiny_artifacts[0], threads=max_threads() + 1)
    open_backend(tiny_artifacts[0], threads=max_threads()).close()


def test_batch_size_is_bounded(tmp_path, tiny_artifacts):
    from sranet.runtime.batch import predict_batch
    from sranet.runtime.predictor import Predictor

    with Predictor.from_artifact(tiny_artifacts[0], threads=1) as predictor, \
            pytest.raises(InputError, match="batch=100000 is more than 256"):
        predict_batch(predictor, [], tmp_path / "r.jsonl", batch=100_000)


# -- ROIs ------------------------------------------------------------------------------------------------------------
def test_rois_that_reach_past_the_volume_are_flagged_and_absurd_ones_refused():
    volume = _volume()
    cfg = PreprocessConfig(output_size=48)
    assert "roi_clipped" in preprocess(volume, cfg, roi=parse_roi("-4:16,0:40,0:40")).qc
    assert "roi_clipped" not in preprocess(volume, cfg, roi=parse_roi("0:20,0:40,0:40")).qc
    assert roi_clipped(parse_roi("mm:-10:10,0:10,0:10"), volume.shape, volume.affine)
    with pytest.raises(InputError, match="reaches 1e\\+308 mm"):
        parse_roi("mm:-1e308:1e308,0:1,0:1")
    with pytest.raises(InputError, match="ROI '0.5:10,0:10,0:10' has non-integer indices"):
        parse_roi("0.5:10,0:10,0:10")


def test_a_volume_with_one_value_is_flagged():
    volume = Volume(hu=np.full((20, 40, 40), 40.0, np.float32), spacing_mm=(2.0, 0.8, 0.8))
    assert "uniform_input" in preprocess(volume, PreprocessConfig(output_size=48)).qc
    assert "uniform_input" not in preprocess(_volume(), PreprocessConfig(output_size=48)).qc


# -- one case-key rule -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["hip 01", "a" * 150, "../../etc/passwd", "Müller, Hans^2020", "._x", "x" * 99 + "é"])
def test_predict_keys_and_prepare_names_follow_one_rule(case_id):
    from sranet.runtime.manifest import safe_name as manifest_name

    assert case_key(case_id, None) == safe_name(case_id) == manifest_name(case_id)
    assert len(safe_name(case_id)) <= 100


def test_inputs_must_be_regular_files_or_folders(tmp_path):
    from sranet.errors import UnreadableFileError
    from sranet.runtime.io import load_volume

    fifo = tmp_path / "v.nii"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        with pytest.raises(UnreadableFileError, match="not a regular file or folder"):
            load_volume(path)
