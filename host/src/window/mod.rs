//! Event-time window state. Events are aggregated per item into one-minute buckets holding, per
//! action, the count and the exact integer sums of the events' offsets within the bucket. Window
//! sizes and slides are whole minutes, so every window is an exact union of buckets: state per
//! item grows with the window length, not with the number of events, and any weight, lambda or
//! geometry can be applied to the whole window at emission time (DESIGN §4).

mod buckets;
mod dedup;
mod hot;

pub use buckets::{BUCKET_MS, Cell, ItemBuckets};
pub use dedup::SeenEventIds;
pub use hot::{AddOutcome, HotWindows};
