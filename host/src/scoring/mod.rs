//! Scoring of emitted windows: the columnar batch, the built-in formula and top-N selection,
//! and how two rankings compare (`ranking`).

pub mod batch;
pub mod builtin;
pub mod ranking;
pub mod reference;
pub mod topn;

pub use batch::{FeatureColumn, FeatureValues, WindowBatch};
