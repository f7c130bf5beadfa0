//! Redis sink (in progress).
