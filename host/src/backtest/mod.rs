//! Backtesting: compare the hot lists two runs emitted (for example the live config and a
//! candidate replayed over the same recorded events) window by window.

pub mod diff;
