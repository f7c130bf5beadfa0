//! decay-weighted reference plugin (in progress).
