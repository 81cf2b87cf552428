//! The local HTTP/1.1 server (`pennyworth serve`): a thin front end over [`Engine::handle`].

use crate::body::Body;
use crate::engine::{ClientAddr, Engine, too_large};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the body up to the engine's limit and hands the request to the engine.
async fn answer(
    engine: Arc<Engine>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let limit = engine.max_body_bytes();
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit).into_response();
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large(limit).into_response();
        }
        Err(e) => {
            tracing::debug!(error = %e, "client body read failed");
            return crate::errors::ApiError::bad_request(
                "body_read_failed",
                "the request body could not be read",
            )
            .into_response();
        }
    };
    parts.extensions.insert(ClientAddr(peer));
    engine.handle(Request::from_parts(parts, bytes)).await
}

/// How [`serve_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished (or the drain timeout closed the rest).
    Drained,
    /// `abort` resolved during the drain: open connections were cut.
    Aborted {
        /// Connections still open when it did.
        open: usize,
    },
}

/// Counts open connections; the guard of each connection decrements it when dropped.
#[derive(Debug, Clone, Default)]
struct OpenConnections(Arc<AtomicUsize>);

struct ConnectionGuard(Arc<AtomicUsize>);

impl OpenConnections {
    fn enter(&self) -> ConnectionGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves, then drains in-flight requests
/// (up to [`DRAIN_TIMEOUT`]).
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_until(engine, listener, shutdown, std::future::pending())
        .await
        .map(|_| ())
}

/// Like [`serve`], and `abort` (first polled when the drain starts, e.g. a second Ctrl-C)
/// ends the drain at once.
pub async fn serve_until(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    abort: impl Future<Output = ()>,
) -> std::io::Result<Stopped> {
    let graceful = GracefulShutdown::new();
    let open = OpenConnections::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let engine = engine.clone();
                let service = service_fn(move |req| {
                    let engine = engine.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(engine, peer, req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                let guard = open.enter();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(guard);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let n = open.count();
    if n > 0 {
        tracing::info!(
            connections = n,
            "shutting down: draining {n} open connection(s) for up to {} s; send the signal again to stop at once",
            DRAIN_TIMEOUT.as_secs()
        );
    } else {
        tracing::info!("shutting down: no open connections");
    }
    tokio::select! {
        () = graceful.shutdown() => {
            tracing::info!("all connections drained");
            Ok(Stopped::Drained)
        }
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(connections = open.count(), "drain timeout; closing remaining connections");
            Ok(Stopped::Drained)
        }
        () = abort => {
            let open = open.count();
            tracing::warn!(connections = open, "second signal: closing {open} connection(s) now");
            Ok(Stopped::Aborted { open })
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    // The handlers are installed now, not at the first poll: a signal that comes before the
    // server first waits for one must not take the default action (ending the process).
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(int) => {},
                () = wait(term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
