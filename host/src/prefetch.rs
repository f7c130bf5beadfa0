//! A cache hint: asks the processor to start loading memory the pipeline will read soon.
//!
//! Per-event state (a user's profile, an item's cells) lives in tables far larger than the
//! caches, so each event's first touch of it misses. Out-of-order execution hides little of
//! that: an ordinary load of the next event's state stops the processor from retiring anything
//! behind it until the line arrives. A prefetch does not: the load runs while the current event
//! is processed (docs/benchmarks.md, "Prefetching the next events' state").

/// Starts loading every cache line `value` spans. A hint only: no effect on what the program
/// computes.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_bytes(std::ptr::from_ref(value).cast::<i8>(), std::mem::size_of::<T>());
}

/// [`prefetch`] of `values[i]`, if there is one.
#[inline(always)]
pub fn prefetch_at<T>(values: &[T], i: usize) {
    if let Some(v) = values.get(i) {
        prefetch(v);
    }
}

/// [`prefetch`] for the first `max_lines` cache lines of `values`.
#[inline(always)]
pub fn prefetch_slice<T>(values: &[T], max_lines: usize) {
    let bytes = std::mem::size_of_val(values).min(max_lines * 64);
    prefetch_bytes(values.as_ptr().cast::<i8>(), bytes);
}

#[inline(always)]
fn prefetch_bytes(start: *const i8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let lines = ((start as usize & 63) + bytes).div_ceil(64);
        for line in 0..lines {
            // SAFETY: a prefetch never faults and reads nothing into the program: any address
            // is allowed (`wrapping_add` keeps the arithmetic defined). `_mm_prefetch` is only
            // `unsafe` because it is a target-feature function (SSE, always present on x86_64).
            // A documented `unsafe` site (Cargo.toml).
            #[allow(unsafe_code)]
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.wrapping_add(line * 64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (start, bytes);
    }
}
