//! `image_fetch` bounds (issue 16, item 9): images per request, fetches at a time, and each
//! URL fetched once. (Address classes are unit tests in `engine/providers/images.rs`.)

use pennyworth::config::models::ImageFetchSpec;
use pennyworth::inference::{Block, ImageSource, Message, Request, Role};
use pennyworth::providers::images::{ImageFetcher, MAX_IMAGES, PER_REQUEST_CONCURRENCY};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Serves a small PNG on every path after 100 ms; counts requests and the most at once.
async fn images() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let now = Arc::new(AtomicUsize::new(0));
    let (h, p) = (hits.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (h, p, now) = (h.clone(), p.clone(), now.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    PNG.len()
                )
                .into_bytes();
                out.extend_from_slice(PNG);
                let _ = conn.write_all(&out).await;
            });
        }
    });
    (port, hits, peak)
}

fn fetcher() -> ImageFetcher {
    let spec: ImageFetchSpec =
        serde_norway::from_str("enabled: true\nhttps_only: false\nallow_private_addresses: true\n")
            .expect("spec");
    ImageFetcher::new(&spec).expect("client").expect("enabled")
}

fn request_with(urls: &[String]) -> Request {
    Request {
        messages: vec![Message {
            role: Role::User,
            content: urls
                .iter()
                .enumerate()
                .map(|(i, u)| Block::Image {
                    source: ImageSource::Url(u.clone()),
                    param: format!("messages[0].content[{i}]"),
                })
                .collect(),
        }],
        ..Request::default()
    }
}

#[tokio::test]
async fn too_many_images_are_refused_before_any_fetch() {
    let (port, hits, _) = images().await;
    let urls: Vec<String> = (0..200)
        .map(|i| format!("http://127.0.0.1:{port}/{i}.png"))
        .collect();
    let err = fetcher()
        .inline(&request_with(&urls))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains(&format!("at most {MAX_IMAGES}")),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn fetches_run_a_few_at_a_time_and_each_url_once() {
    let (port, hits, peak) = images().await;
    let mut urls: Vec<String> = (0..MAX_IMAGES)
        .map(|i| format!("http://127.0.0.1:{port}/{i}.png"))
        .collect();
    urls.extend(urls.clone());
    let out = fetcher()
        .inline(&request_with(&urls))
        .await
        .expect("fetched")
        .expect("changed");
    assert_eq!(out.messages[0].content.len(), 2 * MAX_IMAGES);
    assert_eq!(hits.load(Ordering::SeqCst), MAX_IMAGES, "each URL once");
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= PER_REQUEST_CONCURRENCY, "{peak} at once");
}
