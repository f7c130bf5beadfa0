//! Time units. Batch times are epoch milliseconds and ages are milliseconds; `decay_lambda` is
//! per hour.

/// Milliseconds in a second.
pub const MS_PER_SECOND: f64 = 1_000.0;
/// Milliseconds in a minute.
pub const MS_PER_MINUTE: f64 = 60_000.0;
/// Milliseconds in an hour (`decay_lambda` is per hour).
pub const MS_PER_HOUR: f64 = 3_600_000.0;
/// Milliseconds in a day.
pub const MS_PER_DAY: f64 = 86_400_000.0;

/// Milliseconds as seconds.
pub fn ms_to_seconds(ms: f64) -> f64 {
    ms / MS_PER_SECOND
}

/// Milliseconds as minutes.
pub fn ms_to_minutes(ms: f64) -> f64 {
    ms / MS_PER_MINUTE
}

/// Milliseconds as hours (the unit of `decay_lambda`).
pub fn ms_to_hours(ms: f64) -> f64 {
    ms / MS_PER_HOUR
}

/// Milliseconds as days.
pub fn ms_to_days(ms: f64) -> f64 {
    ms / MS_PER_DAY
}

/// Seconds as milliseconds.
pub fn seconds_to_ms(s: f64) -> f64 {
    s * MS_PER_SECOND
}

/// Minutes as milliseconds.
pub fn minutes_to_ms(min: f64) -> f64 {
    min * MS_PER_MINUTE
}

/// Hours as milliseconds.
pub fn hours_to_ms(h: f64) -> f64 {
    h * MS_PER_HOUR
}

/// Days as milliseconds.
pub fn days_to_ms(d: f64) -> f64 {
    d * MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(ms_to_hours(hours_to_ms(2.5)), 2.5);
        assert_eq!(minutes_to_ms(15.0), 900_000.0);
        assert_eq!(ms_to_days(days_to_ms(1.0)), 1.0);
        assert_eq!(ms_to_seconds(seconds_to_ms(3.0)), 3.0);
        assert_eq!(ms_to_minutes(90_000.0), 1.5);
    }
}
