//! MongoDB scenario store (in progress).
