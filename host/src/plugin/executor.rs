//! Drives a plugin call to completion on the calling thread, with a deadline.
//!
//! Plugin calls run through wasmtime's async API because the WASI host functions behind a
//! guest's `eprintln!` are async; their synchronous wrappers would `block_on` a tokio runtime,
//! which panics when the caller is itself a tokio task (the event path is). The sandbox's
//! streams never wait, so a call completes in one poll unless the guest waits on something
//! (a timer, say), which the deadline then cuts short.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it completes (`Some`) or `deadline` passes (`None`; the
/// future is dropped, which cancels a wasm call in progress).
pub fn run_until<F: Future>(fut: F, deadline: Instant) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_futures_complete() {
        assert_eq!(run_until(async { 7 }, Instant::now() + Duration::from_secs(1)), Some(7));
    }

    #[test]
    fn pending_futures_time_out() {
        let start = Instant::now();
        let out = run_until(std::future::pending::<()>(), start + Duration::from_millis(30));
        assert_eq!(out, None);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn woken_futures_resume() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = Arc::new(AtomicBool::new(false));
        let mut spawned = false;
        let fut = std::future::poll_fn(|cx| {
            if done.load(Ordering::SeqCst) {
                return Poll::Ready(1);
            }
            if !spawned {
                spawned = true;
                let (done, waker) = (done.clone(), cx.waker().clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    done.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        });
        assert_eq!(run_until(fut, Instant::now() + Duration::from_secs(5)), Some(1));
    }
}
