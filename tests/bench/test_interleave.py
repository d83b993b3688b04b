"""Round-robin interleaving, warm-up and stopping rules, ratios (driven by a fake clock)."""

import pytest

from sranet.bench.runner import Settings, run_interleaved, with_ratios
from sranet.errors import InputError


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make_calls(clock, costs_s, log):
    def make(name, cost):
        def call():
            log.append(name)
            clock.t += cost
            return {"device_ms": cost * 500}
        return call
    return [make(n, c) for n, c in costs_s.items()]


def test_rounds_rotate_and_warmup_is_not_recorded():
    clock, log = FakeClock(), []
    calls = make_calls(clock, {"a": 0.01, "b": 0.02, "c": 0.03}, log)
    s = Settings(warmup_s=0.0, warmup_iters=1, min_iters=3, duration_s=0.0)
    samples = run_interleaved(calls, s, clock=clock)
    assert log[:3] == ["a", "b", "c"]  # one warm-up round
    assert log[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # round r starts at r mod 3
    assert [len(x) for x in samples] == [3, 3, 3]
    assert samples[1][0]["wall_ms"] == pytest.approx(20.0)
    assert samples[2][0]["device_ms"] == pytest.approx(15.0)


def test_duration_and_warmup_time_both_bound_the_run():
    clock, log = FakeClock(), []
    calls = make_calls(clock, {"a": 0.1}, log)
    s = Settings(warmup_s=0.35, warmup_iters=0, min_iters=2, duration_s=1.0)
    samples = run_interleaved(calls, s, clock=clock)
    assert len(log) - len(samples[0]) == 4  # warm-up ran until 0.4 s >= 0.35 s
    assert len(samples[0]) == 10  # measured until 1.0 s
    s = Settings(warmup_s=0.0, warmup_iters=0, min_iters=5, duration_s=0.0, max_iters=5)
    assert len(run_interleaved(calls, s, clock=clock)[0]) == 5


def test_ratios_skip_missing_series():
    rounds = [[{"wall_ms": 10.0}] * 3, None, [{"wall_ms": 30.0}] * 3]
    r = with_ratios(rounds)
    assert r[1] is None
    assert r[2]["paired_median_ratio"] == pytest.approx(3.0)


@pytest.mark.parametrize("kwargs", [{"batches": ()}, {"batches": (0,)}, {"min_iters": 0}, {"duration_s": -1},
                                    {"threads": -2}])
def test_bad_settings(kwargs):
    with pytest.raises(InputError):
        Settings(**kwargs)
