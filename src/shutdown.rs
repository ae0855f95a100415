//! Graceful stop: wait for SIGTERM or ctrl-c, then let the server drain within a time limit.
//!
//! The order (in `cli::serve`): SIGTERM -> `/readyz` answers 503 while the listeners keep serving
//! for the pre-stop delay (load balancers stop routing here; ctrl-c or a second signal skips the
//! wait) -> the listeners close and in-flight requests finish (bounded by the drain timeout) ->
//! sinks `close()` (commit gathered batches) -> exit 0.

use std::time::Duration;

/// How the process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: an orchestrator stopping the pod; honour the pre-stop delay.
    Terminate,
    /// ctrl-c / SIGINT: a person at a terminal; drain at once.
    Interrupt,
}

/// Resolves when the process is asked to stop (SIGTERM, or ctrl-c / SIGINT), saying which.
pub async fn signal() -> Stop {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {
            tracing::info!("ctrl-c received: shutting down");
            Stop::Interrupt
        }
        () = terminate => {
            tracing::info!("SIGTERM received: shutting down");
            Stop::Terminate
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request was answered.
    Complete,
    /// The drain timeout passed first; the remaining connections are dropped.
    TimedOut,
}

/// Awaits `work` for at most `limit`.
pub async fn drain<F: std::future::Future>(work: F, limit: Duration) -> Drained {
    match tokio::time::timeout(limit, work).await {
        Ok(_) => Drained::Complete,
        Err(_) => Drained::TimedOut,
    }
}
