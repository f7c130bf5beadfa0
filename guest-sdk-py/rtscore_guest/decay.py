"""Exponential time decay, as the built-in formula uses it (``decay_lambda`` per hour)."""

import math

from .time import MS_PER_HOUR


def _exp(x):
    # `math.exp` raises on overflow where Rust's gives infinity.
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def exp_decay(lambda_per_hour, age_ms):
    """``exp(-λ·age)`` for one event of age ``age_ms``, λ per hour."""
    return _exp(-lambda_per_hour / MS_PER_HOUR * age_ms)


def expected_decay(lambda_per_hour, age_mean_ms, age_var_ms2):
    """``E[exp(-k·age)]`` of a group of events with the given age mean and variance, k = λ per
    ms: ``exp(-k·m) · (1 + k²·var / 2)``, the second-order expansion the host's built-in formula
    uses."""
    k = lambda_per_hour / MS_PER_HOUR
    return _exp(-k * age_mean_ms) * (1.0 + 0.5 * k * k * age_var_ms2)


def lambda_for_half_life(half_life_hours):
    """The λ (per hour) whose decay halves a weight every ``half_life_hours``."""
    return math.log(2.0) / half_life_hours
