//! When a run stops: on SIGTERM or Ctrl-C for the binary, on a caller's word for a runtime
//! embedded in a test or a command (`rtscore plugin test`).

use tokio::sync::watch;

/// A stop request a run listens for; clones see the same request.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Stops on SIGTERM or Ctrl-C.
    pub fn on_signals() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            let _ = tx.send(true);
            // Kept open: a dropped sender must not read as a second request.
            std::future::pending::<()>().await;
        });
        Shutdown(rx)
    }

    /// Stops when the returned sender sends `true`; dropping the sender never stops the run.
    pub fn manual() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once a stop was requested (at once if it already was). Cancel-safe.
    pub async fn wait(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_stop_is_seen_by_every_clone_and_a_dropped_sender_is_not_a_stop() {
        let (tx, mut a) = Shutdown::manual();
        let mut b = a.clone();
        tx.send(true).unwrap();
        a.wait().await;
        b.wait().await;

        let (tx, mut c) = Shutdown::manual();
        drop(tx);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), c.wait()).await;
        assert!(waited.is_err(), "a dropped sender must not stop the run");
    }
}
