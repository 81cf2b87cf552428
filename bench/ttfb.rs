//! Time to first content byte, sequentially, over keep-alive HTTP/1.1 on loopback.
//!
//! `cargo run --release --example ttfb -- URL BODY_FILE MARKER N [HEADER: VALUE ...]`
//! prints p50/p90/p99/max in microseconds of the time from sending a request to reading
//! `MARKER` in its response, over N requests (one connection per request, so the times include
//! connecting, as a client's first request does).

use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: ttfb URL BODY_FILE MARKER N [HEADER: VALUE ...]");
        std::process::exit(2);
    }
    let url = args[1].strip_prefix("http://").expect("http URL");
    let (host, path) = url.split_once('/').expect("URL with a path");
    let body = std::fs::read(&args[2]).expect("read body");
    let marker = args[3].as_bytes().to_vec();
    let n: usize = args[4].parse().expect("N");
    let mut head = format!(
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for h in &args[5..] {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut conn = tokio::net::TcpStream::connect(host).await.expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        conn.write_all(head.as_bytes()).await.expect("write");
        conn.write_all(&body).await.expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let k = conn.read(&mut buf).await.expect("read");
            assert!(
                k > 0,
                "closed before the marker: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..k]);
            if seen.windows(marker.len()).any(|w| w == marker.as_slice()) {
                break;
            }
        }
        times.push(start.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    let q = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "n={n} p50={}us p90={}us p99={}us max={}us",
        q(0.5),
        q(0.9),
        q(0.99),
        times[times.len() - 1]
    );
}
