//! Sinks: where emitted results and rejected events go (Redis, JSON lines, the terminal view,
//! the dead-letter topic or file, the in-memory live view behind the console).

pub mod dead_letter;
pub mod jsonl;
pub mod live;
pub mod redis;
pub mod terminal;
