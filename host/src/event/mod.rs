//! Behaviour events (DESIGN §2): parsing and validation of one JSON object into an [`Event`],
//! or a [`RejectReason`] that goes to the dead-letter sink with the original bytes.

mod parse;
mod parsed;
mod reject;

pub use parse::{Event, parse_event};
pub use parsed::ParsedEvents;
pub use reject::{QuotaKind, RejectReason};
