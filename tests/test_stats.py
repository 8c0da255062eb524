import numpy as np
import pytest

from scipy import stats

from bnutils.measure.stats import (Interval, decide, equivalent, fit_linear_rate, mean_ci,
                                   proportion_ci)


def test_fit_linear_rate_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    t = np.arange(300)
    errors = 10.0 ** (-0.05 * t + rng.normal(0, 0.05, t.size))
    fit = fit_linear_rate(errors, upper=1.0, lower=1e-20)
    assert fit.lo < -0.05 < fit.hi and fit.hi - fit.lo < 0.002
    assert fit.first == 0 and fit.last == 299 and fit.n == 300
    assert not fit.agrees_with(-0.06, rtol=0.05)
    # the window stops before the first point under lower * error_0
    fit = fit_linear_rate(10.0 ** (-0.1 * t), upper=1e-2, lower=1e-10)
    assert (fit.first, fit.last) == (20, 100) and fit.slope == pytest.approx(-0.1)


def test_fit_linear_rate_refuses_bad_input():
    with pytest.raises(ValueError, match="finite positive"):
        fit_linear_rate(np.array([1.0, 0.0, 0.1]))
    with pytest.raises(ValueError, match="never fall"):
        fit_linear_rate(np.array([1.0, 0.9, 0.8]))
    with pytest.raises(ValueError, match="only 2 points"):
        fit_linear_rate(np.array([1.0, 1e-3, 1e-4, 1e-12]))


def test_mean_ci_is_the_t_interval():
    ci = mean_ci([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert ci.estimate == 2.0 and ci.lo == pytest.approx(2 - half) and ci.n == 3
    single = mean_ci([0.7])
    assert single.lo == single.hi == 0.7 and single.n == 1
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, float("nan")])


def test_proportion_ci_is_the_wilson_interval():
    ci = proportion_ci(80, 100)
    assert ci.estimate == 0.8 and ci.lo == pytest.approx(0.7112, abs=1e-3)
    assert ci.hi == pytest.approx(0.8666, abs=1e-3)
    assert proportion_ci(0, 10).lo == 0.0 and proportion_ci(10, 10).hi == 1.0


def test_decide_needs_intervals_apart_by_the_margin():
    a, b = Interval(0.8, 0.78, 0.82, 3), Interval(0.7, 0.68, 0.72, 3)
    assert decide(a, b) is True and decide(b, a) is False
    assert decide(a, b, margin=0.07) is None  # apart by 0.06 only
    near = Interval(0.75, 0.71, 0.79, 3)
    assert decide(a, near) is None and decide(near, a) is None  # overlap: inconclusive


def test_equivalent_within_a_margin():
    a, b = Interval(0.80, 0.79, 0.81, 3), Interval(0.805, 0.80, 0.81, 3)
    assert equivalent(a, b, margin=0.05) is True
    assert equivalent(a, Interval(0.5, 0.49, 0.51, 3), margin=0.05) is False
    assert equivalent(a, Interval(0.75, 0.70, 0.80, 3), margin=0.05) is None


def test_fit_rate_over_divides_by_the_cost_per_step():
    from bnutils.measure.stats import fit_rate_over
    t = np.arange(200)
    errors = 10.0 ** (-0.1 * t)
    fit = fit_rate_over(3.0 * t, errors, upper=1e-2, lower=1e-10)
    assert fit.slope == pytest.approx(-0.1 / 3) and (fit.first, fit.last) == (20, 100)
    # an uneven cost: slope per unit cost over the same window
    cost = np.cumsum(np.where(t % 2 == 0, 1.0, 3.0))
    fit = fit_rate_over(cost, errors, upper=1e-2, lower=1e-10)
    assert fit.slope == pytest.approx(-0.05, rel=0.01) and fit.lo < fit.slope < fit.hi
    with pytest.raises(ValueError, match="same length"):
        fit_rate_over(t[:-1], errors)
    with pytest.raises(ValueError, match="increase"):
        fit_rate_over(np.zeros(200), errors)


def test_ratios_of_positive_intervals():
    from bnutils.measure.stats import decide_ratio, log_ratio, paired_log_ratio
    fast, slow = Interval(2.0, 1.9, 2.1, 3), Interval(1.0, 0.95, 1.05, 3)
    r = log_ratio(fast, slow)
    assert r.estimate == pytest.approx(np.log10(2)) and r.lo == pytest.approx(np.log10(1.9 / 1.05))
    assert decide_ratio(r, 0.1) is True and decide_ratio(log_ratio(slow, fast), 0.1) is False
    # apart, but by less than the margin: a factor 1.81 at least, 2.2 at most
    assert decide_ratio(r, 1.0) is None
    near = Interval(1.05, 0.9, 1.2, 3)
    assert decide_ratio(log_ratio(near, slow), 0.0) is None  # overlap: inconclusive
    with pytest.raises(ValueError, match="positive"):
        log_ratio(Interval(0.0, -1.0, 1.0, 3), slow)
    p = paired_log_ratio([2.0, 4.0, 8.0], [1.0, 2.0, 4.0])  # a = 2 b on every seed
    assert p.estimate == pytest.approx(np.log10(2)) and p.lo == p.hi == pytest.approx(np.log10(2))
    assert decide_ratio(p, 0.5) is True and decide_ratio(p, 1.5) is None
    with pytest.raises(ValueError, match="margin"):
        decide_ratio(p, -0.1)


def test_one_sided_and_combined_verdicts():
    from bnutils.measure.stats import all_agree, at_least

    assert at_least(Interval(1.0, 0.5, 1.5, 3), 0.5) is True
    assert at_least(Interval(0.0, -0.5, 0.4, 3), 0.5) is False
    assert at_least(Interval(0.5, 0.2, 0.8, 3), 0.5) is None
    assert all_agree([True, True]) is True and all_agree([False, False]) is False
    assert all_agree([True, None]) is None and all_agree([True, False]) is None
