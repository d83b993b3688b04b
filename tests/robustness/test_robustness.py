"""The bad-input matrix (tests/robustness/matrix_*.py) through the CLI: every case must end as what it declares (a
clean error, a failure record, a flagged prediction, or a plain prediction for good input), under a timeout, and never
as a traceback, a hang or a silent prediction. The counts are printed at the end of the session."""

from __future__ import annotations

import pytest

from tests.robustness.harness import SUMMARY, Env, classify, invoke
from tests.robustness.matrix_inputs import CASES as INPUT_CASES
from tests.robustness.matrix_prepare_export import CASES as PREPARE_EXPORT_CASES
from tests.robustness.matrix_run import CASES as RUN_CASES

MATRIX = [*INPUT_CASES, *RUN_CASES, *PREPARE_EXPORT_CASES]


def test_case_names_are_unique():
    names = [c.name for c in MATRIX]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


@pytest.mark.parametrize("case", MATRIX, ids=lambda c: c.name)
def test_bad_input(case, base, tmp_path):
    env = Env(tmp_path, base)
    run = invoke(case.argv(env))
    outcome, detail = classify(run, env)
    SUMMARY[case.name] = outcome
    assert outcome == case.expect, (f"{case.name}: expected {case.expect}, got {outcome}: {detail}\n"
                                    f"--- output ---\n{run.output}")
    assert case.needle in detail, f"{case.name}: {case.needle!r} is not in what the {outcome} says: {detail}"
    if outcome == "error":
        assert "\n" not in detail and len(detail) < 1000, detail  # one line
    if case.check is not None:
        case.check(env, run)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_randomly_damaged_inputs_never_crash_or_hang(seed, base, tmp_path):
    """Random bytes of a DICOM slice, a NIfTI header or a .npy header overwritten: whatever the damage, the run ends
    as a clean error, a failure record, a flagged or a plain prediction (a flipped pixel may still be a CT)."""
    import shutil

    import numpy as np

    from tests.robustness.inputs import slices

    rng = np.random.default_rng(seed)
    kind = ("dicom", "nifti", "npy")[seed % 3]
    if kind == "dicom":
        target = shutil.copytree(base.series, tmp_path / "s")
        victim = slices(target)[int(rng.integers(20))]
    elif kind == "nifti":
        target = victim = tmp_path / "v.nii.gz"
        import gzip

        victim.write_bytes(gzip.decompress(base.nifti.read_bytes()))
        target = victim = victim.rename(tmp_path / "v.nii")
    else:
        target = victim = tmp_path / "v.npy"
        shutil.copy(base.npy, victim)
        shutil.copy(base.npy.with_suffix(".json"), tmp_path / "v.json")
    data = bytearray(victim.read_bytes())
    span = 400 if kind != "dicom" else len(data)  # headers for NIfTI and .npy; anywhere in a DICOM file
    for at in rng.integers(0, min(span, len(data)), size=int(rng.integers(1, 12))):
        data[int(at)] = int(rng.integers(256))
    victim.write_bytes(bytes(data))
    env = Env(tmp_path, base)
    run = invoke(["predict", base.onnx, target, "--out", env.out, "--threads", "1"])
    outcome, detail = classify(run, env)
    assert outcome in ("error", "failure", "flagged", "ok"), f"{kind} seed {seed}: {outcome}: {detail}"
