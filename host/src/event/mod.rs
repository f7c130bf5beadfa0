//! Behaviour events (DESIGN §2): parsing and validation of one JSON object into an [`Event`],
//! or a [`RejectReason`] that goes to the dead-letter sink with the original bytes; and the
//! [`RecordBatch`] of raw records sources hand the pipeline.

mod parse;
mod parsed;
mod record_batch;
mod reject;

pub use parse::{Event, parse_event};
pub use parsed::ParsedEvents;
pub use record_batch::{Position, RecordBatch};
pub use reject::{QuotaKind, RejectReason};
