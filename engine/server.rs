//! The local HTTP/1.1 server (`pennyworth serve`): a thin front end over [`Engine::handle`].
//!
//! Bounded under abuse ([`Limits`]): headers and bodies have read deadlines, an over-limit body
//! is read and discarded up to a bound so the client sees its 413 rather than a reset, and the
//! number of open connections is capped (beyond it, connections wait in the listen backlog).

use crate::body::Body;
use crate::engine::{ClientAddr, Engine, too_large};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Resource bounds of the local server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's headers.
    pub header_read_timeout: Duration,
    /// Time to receive a whole request body (the 6 MB limit at 200 kB/s).
    pub body_read_timeout: Duration,
    /// Most bytes of an over-limit body read and thrown away before the 413, so the client
    /// (which is still sending) reads the answer instead of a connection reset; a body
    /// declared larger than this gets its 413 at once and the connection closes.
    pub discard_bytes: u64,
    /// Most connections open at once.
    pub max_connections: usize,
    /// hyper's per-connection buffer bound (read buffer, and write buffer when flattened).
    pub connection_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            discard_bytes: 16 * 1024 * 1024,
            max_connections: 1024,
            connection_buffer_bytes: 64 * 1024,
        }
    }
}

fn closing(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

fn body_timeout() -> Response<Body> {
    closing(
        crate::errors::ApiError::new(
            http::StatusCode::REQUEST_TIMEOUT,
            crate::errors::ErrorKind::InvalidRequestError,
            "body_timeout",
            "the request body did not arrive in time",
        )
        .into_response(),
    )
}

/// Reads and drops what is left of a body, up to `bound` bytes in all; true when the body
/// ended within the bound.
async fn discard(mut body: Incoming, bound: u64) -> bool {
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        if let Some(data) = frame.data_ref() {
            seen = seen.saturating_add(data.len() as u64);
            if seen > bound {
                return false;
            }
        }
    }
    true
}

/// Most body bytes of a refused (unauthenticated) request read and dropped, so a client that
/// sent a small body with its headers reads the 401 instead of a reset; a larger body is not
/// read at all and the connection closes after the answer.
pub const REFUSED_DRAIN_BYTES: u64 = 64 * 1024;

/// Authenticates from the headers, then reads the body up to the engine's limit (within the
/// body deadline) and hands the request to the engine. An unauthenticated request is answered
/// without its body being buffered.
async fn answer(
    engine: Arc<Engine>,
    limits: Limits,
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
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        if n <= limits.discard_bytes {
            // Whatever happens, the answer is 413: read at most the declared bytes, in time.
            let _ = tokio::time::timeout(limits.body_read_timeout, discard(body, n)).await;
            return too_large(limit).into_response();
        }
        return closing(too_large(limit).into_response());
    }
    parts.extensions.insert(ClientAddr(peer));
    if let Some(early) = engine.authenticate_early(&parts).await {
        let refused = early.refused();
        parts.extensions.insert(early);
        if refused {
            let small = declared.is_none_or(|n| n <= REFUSED_DRAIN_BYTES);
            let drained = small
                && tokio::time::timeout(
                    limits.body_read_timeout,
                    discard(body, REFUSED_DRAIN_BYTES),
                )
                .await
                .unwrap_or(false);
            let response = engine
                .handle(Request::from_parts(parts, Bytes::new()))
                .await;
            return if drained { response } else { closing(response) };
        }
    }
    enum Read {
        Done(Bytes),
        TooLarge(Incoming),
        Failed(hyper::Error),
    }
    let read = async {
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        loop {
            match body.frame().await {
                None => return Read::Done(buf.freeze()),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if buf.len().saturating_add(data.len()) > limit {
                            return Read::TooLarge(body);
                        }
                        buf.extend_from_slice(data);
                    }
                }
                Some(Err(e)) => return Read::Failed(e),
            }
        }
    };
    let bytes: Bytes = match tokio::time::timeout(limits.body_read_timeout, read).await {
        Err(_) => return body_timeout(),
        Ok(Read::Done(bytes)) => bytes,
        Ok(Read::TooLarge(rest)) => {
            // A streamed body over the limit: drain a bounded rest so the 413 is read.
            let bound = limits.discard_bytes.saturating_sub(limit as u64);
            let _ = tokio::time::timeout(limits.body_read_timeout, discard(rest, bound)).await;
            return closing(too_large(limit).into_response());
        }
        Ok(Read::Failed(e)) => {
            tracing::debug!(error = %e, "client body read failed");
            return crate::errors::ApiError::bad_request(
                "body_read_failed",
                "the request body could not be read",
            )
            .into_response();
        }
    };
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

/// Counts open connections, and those closed since the last heap trim check; the guard of each
/// connection updates both when dropped.
#[derive(Debug, Clone, Default)]
struct OpenConnections {
    open: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

struct ConnectionGuard(OpenConnections);

impl OpenConnections {
    fn enter(&self) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every 2 s, when connections closed since the last check, hand the allocator's free pages
/// back to the system (`crate::memory`), so the memory of a burst (slow streams, large bodies)
/// does not stay with the process; and once more 15 s after the last such trim, for what was
/// freed later (blocking-pool threads that ran directory lookups exit after 10 s idle).
/// Expired identity cache entries are swept first. The trim runs on the blocking pool, so it
/// holds up no request.
async fn trim_after_closes(engine: Arc<Engine>, open: OpenConnections) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut follow_up: Option<tokio::time::Instant> = None;
    loop {
        let now = tick.tick().await;
        if open.closed.swap(0, Ordering::Relaxed) > 0 {
            follow_up = Some(now + Duration::from_secs(15));
        } else if follow_up.is_some_and(|at| now >= at) {
            follow_up = None;
        } else {
            continue;
        }
        // Expired identity cache entries first: small live allocations scattered over freed
        // pages (a burst of forged keys) keep those pages from being returned.
        engine.identities().sweep();
        let _ = tokio::task::spawn_blocking(crate::memory::trim).await;
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

/// Like [`serve_until`] with the default [`Limits`].
pub async fn serve_until(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    abort: impl Future<Output = ()>,
) -> std::io::Result<Stopped> {
    serve_with_limits(engine, listener, shutdown, abort, Limits::default()).await
}

/// Most bytes of a new connection looked at (without consuming them) to tell a health probe
/// from the rest: a request line with a long query string is simply not taken for one.
const PEEK_BYTES: usize = 256;

/// True when the bytes a connection starts with are a complete request line for a health
/// route (`GET /v1/health HTTP/1.1`).
fn starts_with_probe(engine: &Engine, head: &[u8]) -> bool {
    let Some(end) = head.iter().position(|b| *b == b'\r' || *b == b'\n') else {
        return false;
    };
    let mut parts = head[..end].split(|b| *b == b' ');
    let (Some(method), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(method), Ok(target)) = (
        http::Method::from_bytes(method),
        std::str::from_utf8(target),
    ) else {
        return false;
    };
    let path = target.split('?').next().unwrap_or(target);
    engine.is_health_probe(&method, path)
}

/// What every connection task needs, cloned per connection.
#[derive(Clone)]
struct Shared {
    engine: Arc<Engine>,
    limits: Limits,
    open: OpenConnections,
    slots: Arc<tokio::sync::Semaphore>,
    /// The runtime whose workers run the engine for every request but health probes.
    workers: tokio::runtime::Handle,
    /// Turns true when the server stops accepting.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// Serves one connection with hyper. On the accept lane (`on_lane`), a health probe is
/// answered where it is and any other request runs on the workers, after which the connection
/// closes; elsewhere everything runs where the connection is.
async fn serve_connection(
    shared: Shared,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    on_lane: bool,
) {
    let engine = shared.engine.clone();
    let limits = shared.limits;
    let workers = shared.workers.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let engine = engine.clone();
        let workers = workers.clone();
        async move {
            let response = if on_lane && !engine.is_health_probe(req.method(), req.uri().path()) {
                // Run it on the workers, and close the connection after it: the client's next
                // connection goes to the workers, so only probes keep the lane busy.
                closing(
                    match workers.spawn(answer(engine, limits, peer, req)).await {
                        Ok(response) => response,
                        Err(e) => crate::errors::ApiError::internal(&e).into_response(),
                    },
                )
            } else {
                answer(engine, limits, peer, req).await
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.connection_buffer_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A new connection on the accept lane: a health probe's connection (told by its first
/// request line) stays on the lane; any other moves to the workers' runtime.
async fn route_connection(
    shared: Shared,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: tokio::sync::OwnedSemaphorePermit,
    watcher: Watcher,
) {
    let guard = shared.open.enter();
    let mut head = [0u8; PEEK_BYTES];
    let mut stopping = shared.stopping.clone();
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(shared.limits.header_read_timeout, stream.peek(&mut head)) => peeked,
        // No request yet: close, as hyper does with an idle connection when draining.
        _ = stopping.wait_for(|s| *s) => return,
    };
    let probe = match peeked {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return, // closed, failed, or silent past the deadline
        Ok(Ok(n)) => starts_with_probe(&shared.engine, &head[..n]),
    };
    if probe {
        serve_connection(shared, stream, peer, watcher, true).await;
        drop((guard, slot));
        return;
    }
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let workers = shared.workers.clone();
    workers.spawn(async move {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => serve_connection(shared, stream, peer, watcher, false).await,
            Err(e) => tracing::debug!(error = %e, "connection hand-over failed"),
        }
        drop((guard, slot));
    });
}

/// The accept loop, on the accept lane, until `stop` changes.
async fn accept_loop(shared: Shared, graceful: &GracefulShutdown, listener: TcpListener) {
    let mut stop = shared.stopping.clone();
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's backlog.
        let ready = tokio::select! {
            permit = shared.slots.clone().acquire_owned() => permit.ok(),
            _ = stop.changed() => break,
        };
        let Some(permit) = ready else { break };
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
                let watcher = graceful.watcher();
                tokio::spawn(route_connection(shared.clone(), stream, peer, permit, watcher));
            }
            _ = stop.changed() => break,
        }
    }
}

/// Like [`serve`] within `limits`, and `abort` (first polled when the drain starts, e.g. a
/// second Ctrl-C) ends the drain at once.
///
/// Connections are accepted on a thread of their own (the accept lane), which also serves the
/// connections whose first request is a health probe: a probe is answered there even while
/// the workers are saturated by model calls, and any other request runs on the workers of
/// the runtime this is called on.
pub async fn serve_with_limits(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    abort: impl Future<Output = ()>,
    limits: Limits,
) -> std::io::Result<Stopped> {
    let graceful = GracefulShutdown::new();
    let open = OpenConnections::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Shared {
        engine: engine.clone(),
        limits,
        open: open.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
        workers: tokio::runtime::Handle::current(),
        stopping: stop_rx,
    };
    let listener = listener.into_std()?;
    let lane = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The lane hands the shutdown helper back once it accepts no more connections.
    let (stopped_tx, stopped_rx) =
        tokio::sync::oneshot::channel::<std::io::Result<GracefulShutdown>>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("pennyworth-accept".into())
        .spawn(move || {
            lane.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = stopped_tx.send(Err(e));
                        return;
                    }
                };
                accept_loop(shared, &graceful, listener).await;
                let _ = stopped_tx.send(Ok(graceful));
                // Serve the probes' connections through the drain.
                let _ = done_rx.await;
            });
        })?;
    let _done = done_tx; // dropped on return: the lane thread ends
    let trimmer = tokio::spawn(trim_after_closes(engine.clone(), open.clone()));
    let mut stopped_rx = stopped_rx;
    let early = tokio::select! {
        () = shutdown => None,
        ended = &mut stopped_rx => Some(ended),
    };
    let _ = stop_tx.send(true);
    let ended = match early {
        Some(ended) => ended,
        None => stopped_rx.await,
    };
    trimmer.abort();
    let graceful = match ended {
        Ok(Ok(graceful)) => graceful,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(std::io::Error::other(
                "the accept thread ended unexpectedly",
            ));
        }
    };
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
