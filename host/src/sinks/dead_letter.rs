//! Dead-letter sink (in progress).
