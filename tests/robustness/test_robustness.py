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
