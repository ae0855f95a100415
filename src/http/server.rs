//! Running [`super::routes`] on a real listener, with a graceful, time-bounded stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{AppState, routes};
use crate::shutdown::{self, Drained};

/// A server accepting connections until [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The bound address (the real port when asked for port 0).
    local_addr: SocketAddr,
    /// Shared with the routes: flips `/readyz` to 503 when draining starts.
    state: Arc<AppState>,
    /// Fired once to stop accepting.
    stop: Option<oneshot::Sender<()>>,
    /// The accept loop; ends when every connection has finished.
    task: JoinHandle<()>,
}

/// Binds `listen` and starts serving `state`'s routes.
pub async fn start(state: Arc<AppState>, listen: SocketAddr) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|err| std::io::Error::new(err.kind(), format!("cannot listen on {listen}: {err}")))?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = warp::serve(routes(state.clone())).incoming(listener).graceful(async move {
        // A dropped sender also means stop.
        let _ = stopped.await;
    });
    let task = tokio::spawn(server.run());
    Ok(RunningServer { local_addr, state, stop: Some(stop), task })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, answers `/readyz` with 503, and waits up to `drain` for in-flight
    /// requests to be answered (idle keep-alive connections are closed at once).
    pub async fn shutdown(mut self, drain: Duration) -> Drained {
        self.state.start_draining();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let drained = shutdown::drain(&mut self.task, drain).await;
        if drained == Drained::TimedOut {
            self.task.abort();
        }
        drained
    }
}
