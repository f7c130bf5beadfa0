"""Numerically safe helpers for scoring formulas: none of them returns NaN or infinity on finite
input, which the host would reject."""

import math as _m


def safe_div(num, den):
    """``num / den``, or 0 when ``den`` is 0 (or the quotient is not finite)."""
    if den == 0.0:
        return 0.0
    try:
        q = num / den
    except OverflowError:
        return 0.0
    return q if _m.isfinite(q) else 0.0


def wilson_lower_bound(successes, trials, z):
    """Lower bound of the Wilson score interval for a proportion; ``successes`` is clamped to
    ``0..=trials``; 0 when ``trials`` is 0. ``z`` is the normal quantile (1.96 for 95 %)."""
    if trials <= 0.0 or not _m.isfinite(trials):
        return 0.0
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    centre = p + z2 / (2.0 * trials)
    margin = z * _m.sqrt((p * (1.0 - p) + z2 / (4.0 * trials)) / trials)
    return max((centre - margin) / (1.0 + z2 / trials), 0.0)


def log_volume(x):
    """``ln(1 + x)`` for ``x >= 0``, 0 below: a volume factor that grows slowly with counts."""
    return _m.log1p(x) if x > 0.0 else 0.0


def finite_or(x, fallback):
    """``x`` if finite, else ``fallback``."""
    return x if _m.isfinite(x) else fallback
