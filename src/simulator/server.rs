//! Serving the simulator: the accept loop, per-connection tasks, dropped connections, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::api::{Sim, router};
use super::config::SimConfig;
use super::ledger::{LedgerEntry, SimStats};
use super::response::DropConnection;

/// How long shutdown waits for answers in flight before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A local stand-in for Kapture's Update Ticket and Get Ticket APIs.
#[derive(Debug)]
pub struct Simulator;

/// A running simulator. Dropping it stops accepting; [`SimHandle::shutdown`] also waits.
#[derive(Debug)]
pub struct SimHandle {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    sim: Arc<Sim>,
    cancel: CancellationToken,
    accept_loop: JoinHandle<()>,
}

/// Returned by the connection's service to make hyper close it without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose by the simulator")]
struct Dropped;

impl Simulator {
    /// Binds `addr` and serves in the background of the current tokio runtime.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let sim = Arc::new(Sim::new(config, cancel.clone()));
        let accept_loop = tokio::spawn(accept_loop(listener, sim.clone(), cancel.clone()));
        tracing::debug!(%addr, "simulator listening");
        Ok(SimHandle {
            addr,
            sim,
            cancel,
            accept_loop,
        })
    }
}

impl SimHandle {
    /// `http://IP:PORT`, the base URL to give the client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every Update Ticket request so far, as served at `GET /_sim/ledger`.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.sim.books.ledger()
    }

    /// The counts, as served at `GET /_sim/stats`.
    pub fn stats(&self) -> SimStats {
        self.sim.books.stats(self.sim.ticket_count())
    }

    /// Stops accepting, lets answers in flight finish for a short grace period (hanging
    /// requests are cut at once) and waits for every connection to close.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.accept_loop).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, sim: Arc<Sim>, cancel: CancellationToken) {
    let service = TowerToHyperService::new(router(sim));
    // Each connection task holds a sender; when all are gone, every connection has closed.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("simulator failed to accept a connection: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            service.clone(),
            cancel.clone(),
            open_tx.clone(),
        ));
    }
    drop(listener);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<axum::Router>,
    cancel: CancellationToken,
    _open: mpsc::Sender<()>,
) {
    let handler = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let call = service.call(request);
        async move {
            let response: hyper::Response<Body> = match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                return Err(Dropped);
            }
            Ok(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), handler);
    tokio::pin!(connection);
    // Errors here are clients going away or dropped connections: nothing to report.
    tokio::select! {
        _ = connection.as_mut() => {}
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}
