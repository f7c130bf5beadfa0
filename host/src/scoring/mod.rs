//! Scoring of emitted windows: the columnar batch, the built-in formula and top-N selection.

pub mod batch;
pub mod builtin;
pub mod reference;
pub mod topn;

pub use batch::WindowBatch;
