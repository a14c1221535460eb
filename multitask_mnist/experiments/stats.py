"""The statistics of a comparison: a mean with its interval, Δm, and paired tests.

Every interval is a two-sided 95% Student-t interval over seeds (the runs of a cell
are independent draws of the whole training procedure). A method is compared with
equal weighting (``none``) *paired by seed*: the same seed gives both runs the same
data, split, pairing and initialisation, so the per-seed differences carry the
method's effect, and a paired t-test on them (two-sided) says whether it is
distinguishable from zero. With several methods, the p-values are adjusted with Holm's
step-down procedure, which controls the family-wise error rate. scipy computes the
t quantiles and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from multitask_mnist.errors import InvalidValueError

__all__ = ["CONFIDENCE", "PairedTest", "Summary", "delta_m", "holm", "paired_test", "summarize"]

#: The confidence level of every interval.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """A sample's mean, sample standard deviation, size and 95% confidence interval.

    Attributes:
        mean: The mean.
        sd: The sample standard deviation (``n - 1`` in the denominator); 0 for one value.
        n: The number of values.
        low: The interval's lower end (the mean, for one value: no interval).
        high: The interval's upper end.

    Example:
        >>> s = summarize([1.0, 2.0, 3.0])
        >>> s.mean, s.sd, s.n, round(s.low, 4), round(s.high, 4)
        (2.0, 1.0, 3, -0.4841, 4.4841)
        >>> s.format(2)
        '2.00 ± 1.00 [-0.48, 4.48]'
    """

    mean: float
    sd: float
    n: int
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return (self.high - self.low) / 2

    def format(self, digits: int = 2) -> str:
        """``mean ± sd [low, high]``, or the mean alone for one value."""
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return (
            f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} "
            f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"
        )


def _finite(name: str, values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise InvalidValueError(f"Expected `{name}` to hold at least one value, got none")
    if not all(math.isfinite(v) for v in out):
        raise InvalidValueError(f"Expected `{name}` to hold finite values, got {out}")
    return out


def summarize(values: Sequence[float]) -> Summary:
    """The mean, sample standard deviation and 95% Student-t interval of ``values``.

    Args:
        values: One value per seed.

    Returns:
        The summary; with one value, its sd is 0 and its interval is the value itself.

    Raises:
        ValueError: No values, or a value that is not finite.

    Example:
        >>> summarize([97.0, 97.5]).format()
        '97.25 ± 0.35 [94.07, 100.43]'
    """
    xs = _finite("values", values)
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Summary(mean, 0.0, 1, mean, mean)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    from scipy import stats  # imported on use: the command line starts without it

    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * sd / math.sqrt(n)
    return Summary(mean, sd, n, mean - half, mean + half)


def delta_m(
    scores: Mapping[str, float],
    baseline: Mapping[str, float],
    higher_is_better: Mapping[str, bool] | None = None,
) -> float:
    """Δm, in percent: the mean over tasks of the relative change of each task's metric
    against the single-task baseline, signed so that **positive is better** (Maninis et
    al., 2019, as LibMTL computes it; Nash-MTL reports the opposite sign):

        Δm = 100/T · Σ_t s_t (M_t - B_t) / B_t,  s_t = +1 if higher is better, -1 if not.

    Args:
        scores: The method's metric per task.
        baseline: The single-task networks' metric per task (the same keys).
        higher_is_better: Per task; every metric is higher-is-better by default
            (accuracies).

    Returns:
        Δm in percent.

    Raises:
        ValueError: Different tasks, or a baseline of zero.

    Example:
        >>> round(delta_m({"left": 96.0, "right": 95.0}, {"left": 97.0, "right": 95.0}), 4)
        -0.5155
        >>> round(delta_m({"mae": 0.9}, {"mae": 1.0}, {"mae": False}), 4)  # lower error: better
        10.0
    """
    if set(scores) != set(baseline):
        raise InvalidValueError(
            f"Expected the same tasks in `scores` and `baseline`, got {sorted(scores)} and "
            f"{sorted(baseline)}"
        )
    total = 0.0
    for task, value in scores.items():
        base = baseline[task]
        if base == 0:
            raise InvalidValueError(f"The baseline of task {task!r} is 0: Δm divides by it")
        sign = 1.0 if (higher_is_better or {}).get(task, True) else -1.0
        total += sign * (value - base) / base
    return 100.0 * total / len(scores)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two methods over the same seeds.

    Attributes:
        difference: The per-seed differences (first minus second), summarized.
        p_value: The two-sided paired t-test's p-value (1.0 when it is undefined: fewer
            than two pairs, or no variation and no difference).
    """

    difference: Summary
    p_value: float


def paired_test(first: Sequence[float], second: Sequence[float]) -> PairedTest:
    """Compare ``first`` with ``second``, value ``i`` of each from seed ``i``: the mean
    per-seed difference with its 95% interval, and a two-sided paired t-test.

    Raises:
        ValueError: The two hold different numbers of values, or non-finite ones.

    Example:
        >>> test = paired_test([97.1, 97.4, 97.0], [96.9, 97.0, 96.9])
        >>> round(test.difference.mean, 4), round(test.p_value, 4)
        (0.2333, 0.1181)
    """
    a, b = _finite("first", first), _finite("second", second)
    if len(a) != len(b):
        raise InvalidValueError(f"Expected paired values, one per seed, got {len(a)} and {len(b)}")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    summary = summarize(differences)
    if len(a) < 2 or summary.sd == 0:
        p = 1.0 if summary.mean == 0 or len(a) < 2 else 0.0
        return PairedTest(summary, p)
    from scipy import stats

    return PairedTest(summary, float(stats.ttest_rel(a, b).pvalue))


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (family-wise error rate).

    Args:
        p_values: By name.

    Returns:
        The adjusted p-values, by name, each at most 1.

    Example:
        >>> holm({"a": 0.01, "b": 0.04, "c": 0.03})
        {'a': 0.03, 'b': 0.06, 'c': 0.06}
    """
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    m = len(ordered)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = round(running, 12)
    return {name: adjusted[name] for name in p_values}
