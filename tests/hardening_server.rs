//! The local server under abuse (issue 16, item 7): a stalled body is cut at its deadline, an
//! over-limit body still gets its 413 (read, not reset), and open connections are capped.

mod common;

use pennyworth::server::{Limits, serve_with_limits};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: Limits) -> (String, usize, common::TestDirectory) {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let max = engine.max_body_bytes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve_with_limits(
        Arc::new(engine),
        listener,
        std::future::pending(),
        std::future::pending(),
        limits,
    ));
    (addr, max, dir)
}

/// Reads until the peer closes or `limit` passes; returns what arrived.
async fn read_answer(s: &mut TcpStream, limit: Duration) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_stalled_body_is_cut_at_its_deadline() {
    let (addr, _, dir) = start(Limits {
        body_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\"",
        dir.key("user")
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let answer = read_answer(&mut s, Duration::from_secs(5))
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn an_over_limit_body_gets_its_413_not_a_reset() {
    let (addr, max, _dir) = start(Limits::default()).await;
    // Declared and sent in full (like the Node SDK and fetch do): the 413 is read after the
    // upload, and no write fails.
    let size = max + 4 * 1024 * 1024;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < size {
        let n = chunk.len().min(size - sent);
        s.write_all(&chunk[..n])
            .await
            .expect("the upload is read, not reset");
        sent += n;
    }
    let answer = read_answer(&mut s, Duration::from_secs(10))
        .await
        .expect("the answer is read, not reset");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
}

#[tokio::test]
async fn open_connections_are_capped() {
    let (addr, _, _dir) = start(Limits {
        max_connections: 3,
        ..Limits::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = b"GET /v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    // A fourth waits in the backlog while three are open ...
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(health).await.expect("write");
    let answer = read_answer(&mut s, Duration::from_millis(500))
        .await
        .expect("read");
    assert_eq!(answer, "", "answered beyond the cap");
    // ... and is served as soon as one closes.
    drop(idle.pop());
    let answer = read_answer(&mut s, Duration::from_secs(5))
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// The body of an answer (after the blank line).
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn an_unauthenticated_request_gets_its_401_before_its_body_is_read() {
    let (engine, _dir) = common::engine(&common::repo_root()).await;
    let engine = Arc::new(engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve_with_limits(
        engine.clone(),
        listener,
        std::future::pending(),
        std::future::pending(),
        Limits::default(),
    ));
    let bogus = "pw-Ym9ndXM.0011223344556677.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (path, auth) in [
        (
            "/v1/chat/completions",
            format!("authorization: Bearer {bogus}\r\n"),
        ),
        ("/v1/messages", format!("x-api-key: {bogus}\r\n")),
        ("/v1/chat/completions", String::new()),
    ] {
        // 6 MB declared, not a byte of it sent: the answer comes at once (not after the 30 s
        // body deadline), in the route's dialect, the same as the engine gives for the request.
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 6000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("write head");
        let started = std::time::Instant::now();
        let answer = read_answer(&mut s, Duration::from_secs(5))
            .await
            .expect("read");
        assert!(started.elapsed() < Duration::from_secs(2), "{path}: slow");
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer:?}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        let mut request = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json");
        if let Some((name, value)) = auth.trim_end().split_once(": ") {
            request = request.header(name, value);
        }
        let direct = engine
            .handle(
                request
                    .body(bytes::Bytes::from_static(b"{}"))
                    .expect("request"),
            )
            .await;
        let direct = http_body_util::BodyExt::collect(direct.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body_of(&answer), String::from_utf8_lossy(&direct), "{path}");
    }
}

#[tokio::test]
async fn a_refused_request_with_a_small_body_keeps_its_connection() {
    let (addr, _, dir) = start(Limits::default()).await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let body = r#"{"model":"echo","messages":[{"role":"user","content":"hi"}]}"#;
    let bad = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer nope\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(bad.as_bytes()).await.expect("write");
    let answer = read_answer(&mut s, Duration::from_secs(5))
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    // The body was read and dropped, so the same connection serves the next request.
    let good = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        dir.key("user"),
        body.len()
    );
    s.write_all(good.as_bytes()).await.expect("write");
    let answer = read_answer(&mut s, Duration::from_secs(5))
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// Sends `request` on a blocking socket and reads one answer (headers and a JSON body).
fn blocking_exchange(s: &mut std::net::TcpStream, request: &str) -> String {
    use std::io::{Read, Write};
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !(out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}")) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Health probes are accepted and answered on the server's own accept thread: with the only
/// worker thread busy (a blocking task standing in for a saturating load), a probe on a new
/// connection is answered at once, and another request on the probe's connection still runs
/// (on the worker, once it is free), and closes that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn health_is_answered_while_the_workers_are_busy() {
    let (addr, _, _dir) = start(Limits::default()).await;
    let connect = || {
        let s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    };
    let health = "GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n";
    // Warm: the server answers.
    assert!(blocking_exchange(&mut connect(), health).starts_with("HTTP/1.1 200"));

    let (busy_tx, busy_rx) = std::sync::mpsc::channel();
    tokio::spawn(async move {
        let _ = busy_tx.send(());
        std::thread::sleep(Duration::from_secs(3)); // holds the only worker
    });
    busy_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the worker took the blocking task");

    let started = std::time::Instant::now();
    let mut probe = connect();
    let answer = blocking_exchange(&mut probe, health);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
    assert!(
        took < Duration::from_millis(1500),
        "health took {took:?} with the worker busy"
    );

    // Any other request on the probe's connection is served by the workers.
    let version = blocking_exchange(&mut probe, "GET /v1/version HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(version.starts_with("HTTP/1.1 200"), "{version}");
    assert!(version.contains("\"version\""), "{version}");
    // ... which then closes the connection, so the client's next one goes to the workers.
    assert!(
        version.to_ascii_lowercase().contains("connection: close"),
        "{version}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the version request ran before the busy worker was free"
    );
}
