"""The statistics against values computed by hand (t quantiles from a table)."""

from __future__ import annotations

import math

import pytest

from multitask_mnist.experiments.stats import delta_m, holm, paired_test, summarize


def test_a_three_value_interval_uses_t_with_two_degrees_of_freedom() -> None:
    s = summarize([96.0, 97.0, 98.0])
    assert (s.mean, s.sd, s.n) == (97.0, 1.0, 3)
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) from a table
    assert s.low == pytest.approx(97.0 - half, abs=1e-9)
    assert s.high == pytest.approx(97.0 + half, abs=1e-9)


def test_a_five_value_interval_by_hand() -> None:
    values = [95.1, 95.5, 95.3, 95.9, 95.2]
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    s = summarize(values)
    assert s.mean == pytest.approx(95.4) and s.sd == pytest.approx(sd)
    assert s.half_width == pytest.approx(2.7764451051977987 * sd / math.sqrt(5))  # t(.975, 4)


def test_one_value_has_no_interval_and_non_finite_values_are_refused() -> None:
    s = summarize([3.0])
    assert (s.sd, s.low, s.high) == (0.0, 3.0, 3.0)
    assert s.format() == "3.00"
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, math.nan])
    with pytest.raises(ValueError):
        summarize([])


def test_delta_m_is_the_mean_relative_change_positive_when_better() -> None:
    # left +1 point on 95 (+1.0526%), right -2 points on 90 (-2.2222%): mean -0.5848%
    value = delta_m({"left": 96.0, "right": 88.0}, {"left": 95.0, "right": 90.0})
    assert value == pytest.approx(100 * (1 / 95 - 2 / 90) / 2)
    assert delta_m({"a": 2.0}, {"a": 2.0}) == 0.0
    assert delta_m({"err": 0.5}, {"err": 1.0}, {"err": False}) == pytest.approx(50.0)


def test_delta_m_refuses_other_tasks_and_a_zero_baseline() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        delta_m({"left": 1.0}, {"right": 1.0})
    with pytest.raises(ValueError, match="is 0"):
        delta_m({"left": 1.0}, {"left": 0.0})


def test_the_paired_test_matches_a_hand_computed_t() -> None:
    first, second = [97.1, 97.4, 97.0, 97.3], [96.9, 97.0, 96.9, 97.3]
    d = [a - b for a, b in zip(first, second, strict=True)]  # 0.2, 0.4, 0.1, 0.0
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    t = mean / (sd / 2)
    test = paired_test(first, second)
    assert test.difference.mean == pytest.approx(mean)
    assert t == pytest.approx(2.0494, abs=1e-4)
    # Student's t with 3 degrees of freedom in closed form:
    # P(T <= t) = 1/2 + (x / (1 + x^2) + atan(x)) / pi, x = t / sqrt(3)
    x = t / math.sqrt(3)
    p = 2 * (1 - (0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi))
    assert test.p_value == pytest.approx(p, abs=1e-12)
    assert 0.10 < p < 0.20  # between the table's 2.353 (p = 0.10) and 1.638 (p = 0.20)


def test_the_paired_test_without_variation_and_with_unequal_lengths() -> None:
    assert paired_test([1.0, 2.0], [1.0, 2.0]).p_value == 1.0
    assert paired_test([2.0, 3.0], [1.0, 2.0]).p_value == 0.0  # the same gain on every seed
    with pytest.raises(ValueError, match="one per seed"):
        paired_test([1.0, 2.0], [1.0])


def test_holm_multiplies_by_rank_and_keeps_the_order() -> None:
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 (raised to 0.09), 0.5
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})
    assert holm({"x": 0.9, "y": 0.8}) == {"x": 1.0, "y": 1.0}
