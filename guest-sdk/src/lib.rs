//! Guest SDK for rtscore scoring plugins (in progress).
