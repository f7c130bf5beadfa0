//! Behaviour events (DESIGN §2): parsing and validation of one JSON object into an [`Event`],
//! or a [`RejectReason`] that goes to the dead-letter sink with the original bytes; and the
//! [`RecordBatch`] of raw records sources hand the pipeline.

mod mapping;
mod parse;
mod parsed;
mod props;
mod record_batch;
mod reject;
mod scan;

pub use mapping::{EventField, EventMapping, TsUnit};
pub use parse::{Event, Tags, parse_event, parse_event_mapped};
pub use parsed::ParsedEvents;
pub use props::{MAX_PROP_KEY_BYTES, MAX_PROP_TEXT_BYTES, MAX_PROPS, Prop, PropValue, is_valid_prop_key};
pub use record_batch::{Origin, Position, RecordBatch};
pub use reject::{QuotaKind, RejectReason};
