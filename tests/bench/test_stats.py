"""Latency statistics on known samples: numpy 'linear' (type 7) percentiles, no outlier removal."""

import math

import pytest

from sranet.bench.stats import paired_ratios, summarize
from sranet.errors import InputError


def test_percentiles_linear_on_one_to_ten():
    s = summarize([float(v) for v in range(10, 0, -1)], batch=1)  # order must not matter
    assert s["n"] == 10
    assert s["min_ms"] == 1.0 and s["max_ms"] == 10.0
    assert s["mean_ms"] == pytest.approx(5.5)
    assert s["p50_ms"] == pytest.approx(5.5)
    assert s["p90_ms"] == pytest.approx(9.1)  # r = 0.9 * 9 = 8.1 -> x8 + 0.1 * (x9 - x8)
    assert s["p95_ms"] == pytest.approx(9.55)
    assert s["p99_ms"] == pytest.approx(9.91)
    assert s["std_ms"] == pytest.approx(math.sqrt(sum((v - 5.5) ** 2 for v in range(1, 11)) / 9))


def test_outlier_is_kept_and_moves_the_tail():
    samples = [10.0] * 99 + [1000.0]
    s = summarize(samples)
    assert s["max_ms"] == 1000.0
    assert s["p99_ms"] == pytest.approx(10.0 + 0.01 * 990.0)  # r = 98.01 -> 10 + 0.01 * (1000 - 10)
    assert s["mean_ms"] == pytest.approx(19.9)


def test_single_sample_and_throughput():
    s = summarize([20.0], batch=4)
    assert s["p50_ms"] == s["p99_ms"] == s["min_ms"] == 20.0
    assert s["std_ms"] == 0.0
    assert s["throughput_vol_s"] == pytest.approx(200.0)  # 4 volumes per 20 ms


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [-1.0]])
def test_bad_samples_are_refused(bad):
    with pytest.raises(InputError):
        summarize(bad)


def test_batch_must_be_positive():
    with pytest.raises(InputError, match="batch"):
        summarize([1.0], batch=0)


def test_paired_ratios_against_first():
    ref = [10.0, 20.0, 10.0]
    other = [20.0, 40.0, 20.0]  # 2x in every round, although the machine slowed down in round 1
    r = paired_ratios([ref, other])
    assert r[0] == {"p50_ratio": 1.0, "paired_median_ratio": 1.0}
    assert r[1]["paired_median_ratio"] == pytest.approx(2.0)
    assert r[1]["p50_ratio"] == pytest.approx(2.0)
    assert paired_ratios([]) == []
