"""Time units. Batch times are epoch milliseconds and ages are milliseconds; ``decay_lambda``
is per hour."""

MS_PER_SECOND = 1_000.0
MS_PER_MINUTE = 60_000.0
MS_PER_HOUR = 3_600_000.0
MS_PER_DAY = 86_400_000.0


def ms_to_seconds(ms):
    return ms / MS_PER_SECOND


def ms_to_minutes(ms):
    return ms / MS_PER_MINUTE


def ms_to_hours(ms):
    return ms / MS_PER_HOUR


def ms_to_days(ms):
    return ms / MS_PER_DAY


def seconds_to_ms(s):
    return s * MS_PER_SECOND


def minutes_to_ms(minutes):
    return minutes * MS_PER_MINUTE


def hours_to_ms(h):
    return h * MS_PER_HOUR


def days_to_ms(d):
    return d * MS_PER_DAY
