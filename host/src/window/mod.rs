//! Event-time window state. Events are aggregated per (item, one-minute bucket, action) into a
//! cell holding the count and the exact integer sums of the events' offsets within the bucket.
//! Window sizes and slides are whole minutes, so every window is an exact union of buckets:
//! state grows with the window length and the number of distinct items, not with the number of
//! events, and any weight, lambda or geometry can be applied to the whole window at emission
//! time (DESIGN §4). Cells are stored minute-major over interned item ids (`minute_cells`,
//! `item_ids`); snapshots use an item-major form (`portable`).

mod buckets;
mod dedup;
mod distinct;
mod features;
mod hot;
mod item_ids;
mod minute_cells;
mod portable;

pub use buckets::{BUCKET_MS, Cell, age_moments};
pub use dedup::{Seen, SeenEventIds};
pub use hot::{AddOutcome, HotWindows};
pub use portable::HotWindowsV2;
