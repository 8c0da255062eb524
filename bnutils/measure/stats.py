"""Rates and confidence intervals: turning curves and repeated runs into verdicts.

- :class:`Interval`, :func:`mean_ci` (t interval of a mean over seeds or steps) and
  :func:`proportion_ci` (Wilson interval of an accuracy): an estimate with its uncertainty.
- :func:`decide` and :func:`equivalent`: the book's rule for comparisons. Two intervals that
  are apart by more than a margin decide a comparison; intervals that overlap (within the margin)
  decide nothing, and the verdict is "inconclusive".
- :func:`fit_linear_rate`: the slope of log10(error) per iteration over a curve's linear phase,
  with a t-based confidence interval (:class:`RateFit`); :func:`is_linear` tells a constant rate
  (linear convergence) from a slowing one.
- :func:`slope_ci`: a least-squares slope with its t confidence interval.
- :func:`fit_rate_over`: :func:`fit_linear_rate` against a cost (evaluations, passes over the
  data) instead of the iteration index.
- :func:`log_ratio`, :func:`paired_log_ratio` and :func:`decide_ratio`: "is a faster than b by
  more than a relative margin?" for positive quantities (speeds, costs), from two intervals or
  from paired values over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats
from torch import Tensor


@dataclass(frozen=True)
class Interval:
    """An estimate with a confidence interval [lo, hi] at ``level``, from ``n`` values (seeds,
    steps or examples)."""

    estimate: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    def __post_init__(self) -> None:
        if not self.lo <= self.estimate <= self.hi:
            raise ValueError(f"need lo <= estimate <= hi, got {self.lo}, {self.estimate}, "
                             f"{self.hi}")

    def show(self, digits: int = 2) -> str:
        """'0.83 [0.80, 0.86]', rounded to ``digits`` decimals."""
        return f"{self.estimate:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def __str__(self) -> str:
        return f"{self.estimate:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of ``values`` with its t confidence interval. One value gives an interval of
    width zero (no spread can be estimated from it)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("values must be a non-empty 1-D sequence of finite numbers")
    m = float(x.mean())
    if x.size == 1:
        return Interval(m, m, m, 1, level)
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(m, m - half, m + half, int(x.size), level)


def proportion_ci(successes: float, n: int, level: float = 0.95) -> Interval:
    """A proportion (an accuracy over ``n`` examples) with its Wilson score interval."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {successes}, {n}")
    z = float(stats.norm.ppf((1 + level) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, min(p, centre - half), max(p, centre + half), n, level)


def decide(a: Interval, b: Interval, margin: float = 0.0) -> bool | None:
    """Is ``a`` larger than ``b``? True when a's interval lies above b's by more than
    ``margin``, False when it lies below by more than ``margin``, None (undecided) otherwise."""
    if a.lo > b.hi + margin:
        return True
    if a.hi < b.lo - margin:
        return False
    return None


def equivalent(a: Interval, b: Interval, margin: float) -> bool | None:
    """Are ``a`` and ``b`` the same up to ``margin``? The difference a - b lies in
    [a.lo - b.hi, a.hi - b.lo]: True when that range is inside [-margin, margin], False when it
    does not meet it, None otherwise."""
    lo, hi = a.lo - b.hi, a.hi - b.lo
    if -margin <= lo and hi <= margin:
        return True
    if lo > margin or hi < -margin:
        return False
    return None


def at_least(x: Interval, bound: float) -> bool | None:
    """One-sided: True when x's whole interval lies at or above ``bound``, False when it lies
    below it, None (undecided) when it straddles it."""
    if x.lo >= bound:
        return True
    if x.hi < bound:
        return False
    return None


def all_agree(outcomes: Sequence[bool | None]) -> bool | None:
    """One verdict from several comparisons: True when all are True, False when all are False,
    None (inconclusive) otherwise."""
    if all(o is True for o in outcomes):
        return True
    if all(o is False for o in outcomes):
        return False
    return None


@dataclass(frozen=True)
class RateFit:
    """A linear rate: the slope of log10(error) per iteration, with a t-based confidence interval
    (``level``), fitted over iterations ``first..last`` (``n`` points)."""

    slope: float
    lo: float
    hi: float
    first: int
    last: int
    n: int
    level: float

    @property
    def factor(self) -> float:
        """The per-iteration contraction factor 10**slope."""
        return 10 ** self.slope

    def agrees_with(self, predicted: float, rtol: float = 0.05) -> bool:
        """True when the CI overlaps predicted * [1 - rtol, 1 + rtol] (slopes are negative)."""
        a, b = sorted((predicted * (1 - rtol), predicted * (1 + rtol)))
        return self.lo <= b and a <= self.hi

    def __str__(self) -> str:
        return f"{self.slope:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


def fit_linear_rate(errors: Tensor | np.ndarray, *, upper: float = 1e-2, lower: float = 1e-10,
                    level: float = 0.95) -> RateFit:
    """Least squares of log10(error_t) on t over the linear phase, with a t-based CI for the slope.

    The linear phase runs from the first iteration whose error is at most ``upper * error_0`` to
    the last one before it first drops below ``lower * error_0`` (or the end of the run): this
    skips the transient and stops short of the float64 floor. Raises ValueError when the errors
    never reach ``upper * error_0`` or the window holds fewer than 3 points.
    """
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError("errors must be a 1-D sequence of finite positive numbers")
    if not (0 < lower < upper <= 1) or not (0 < level < 1):
        raise ValueError(f"need 0 < lower < upper <= 1 and 0 < level < 1, got lower={lower}, "
                         f"upper={upper}, level={level}")
    below_upper = np.flatnonzero(e <= upper * e[0])
    if not below_upper.size:
        raise ValueError(f"the errors never fall to upper * error_0 = {upper * e[0]:.3g}")
    first = int(below_upper[0])
    below_lower = np.flatnonzero(e[first:] < lower * e[0])
    last = first + int(below_lower[0]) - 1 if below_lower.size else len(e) - 1
    t = np.arange(first, last + 1)
    if t.size < 3:
        raise ValueError(f"only {t.size} points in the linear phase [{first}, {last}]; "
                         "run longer or widen [lower, upper]")
    return RateFit(*slope_ci(t, np.log10(e[t]), level), first, last, int(t.size), level)


def slope_ci(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(slope, lo, hi): the least-squares slope of y on x with its t-based ``level`` CI."""
    res = stats.linregress(x, y)
    half = stats.t.ppf((1 + level) / 2, len(x) - 2) * res.stderr
    return float(res.slope), float(res.slope - half), float(res.slope + half)


def is_linear(errors: Tensor | np.ndarray, fit: RateFit | None, tol: float = 2.0) -> bool:
    """True when ``fit`` (of ``errors``) is a decrease and the slopes fitted separately on the two
    halves of its window agree within a factor ``tol``: a constant rate (linear convergence), not
    a slowing (sub-linear) curve. False when there is no fit or it spans fewer than 8 points."""
    if fit is None or fit.n < 8:
        return False
    e = np.asarray(errors, dtype=float)
    mid = (fit.first + fit.last) // 2
    a = fit_linear_rate(e[fit.first:mid + 1], upper=1.0, lower=1e-300).slope
    b = fit_linear_rate(e[mid:fit.last + 1], upper=1.0, lower=1e-300).slope
    return fit.hi < 0 and a < 0 and b < 0 and max(a / b, b / a) <= tol


def fit_rate_over(cost: Sequence[float] | np.ndarray, errors: Tensor | np.ndarray, *,
                  upper: float = 1e-2, lower: float = 1e-10, level: float = 0.95) -> RateFit:
    """The slope of log10(error) per unit of ``cost`` (the cumulative cost at each record: gradient
    evaluations, passes over the data), with a t-based CI, over the window that
    :func:`fit_linear_rate` picks from the errors. Raises ValueError as that function does, or
    when ``cost`` does not match ``errors`` or is not increasing over the window."""
    c = np.asarray(cost, dtype=float)
    window = fit_linear_rate(errors, upper=upper, lower=lower, level=level)
    if c.shape != np.shape(np.asarray(errors, dtype=float)):
        raise ValueError(f"cost and errors must have the same length, got {c.shape} and "
                         f"{np.shape(errors)}")
    t = np.arange(window.first, window.last + 1)
    if not np.all(np.diff(c[t]) > 0):
        raise ValueError("cost must increase over the fitted window")
    e = np.asarray(errors, dtype=float)
    return RateFit(*slope_ci(c[t], np.log10(e[t]), level), window.first, window.last,
                   window.n, level)


def log_ratio(a: Interval, b: Interval) -> Interval:
    """log10(a/b) for two positive quantities: estimate log10(a.estimate/b.estimate), interval
    [log10(a.lo/b.hi), log10(a.hi/b.lo)] (every ratio the two intervals allow)."""
    if min(a.lo, b.lo) <= 0:
        raise ValueError(f"log_ratio needs positive intervals, got lo = {a.lo}, {b.lo}")
    return Interval(float(np.log10(a.estimate / b.estimate)), float(np.log10(a.lo / b.hi)),
                    float(np.log10(a.hi / b.lo)), min(a.n, b.n), min(a.level, b.level))


def paired_log_ratio(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """The mean over pairs (seeds) of log10(a_i / b_i) with its t interval (:func:`mean_ci`): a
    paired comparison of two positive quantities measured on the same problems."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("a and b must be 1-D sequences of positive numbers of equal length")
    return mean_ci(np.log10(x / y), level)


def decide_ratio(log10_ratio: Interval, margin: float) -> bool | None:
    """Is a larger than b by more than a factor (1 + margin), given an interval for log10(a/b)
    (:func:`log_ratio`, :func:`paired_log_ratio`)? True when the whole interval lies above
    log10(1 + margin), False when it lies below -log10(1 + margin) (b larger by that factor),
    None (inconclusive) otherwise."""
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    zero = Interval(0.0, 0.0, 0.0, log10_ratio.n, log10_ratio.level)
    return decide(log10_ratio, zero, float(np.log10(1 + margin)))
