//! `image_fetch` in `models.yaml`: `http(s)` image URLs fetched and sent inline to Bedrock
//! when enabled, refused with a 400 naming the part otherwise; private addresses refused
//! unless allowed. The image server runs on 127.0.0.1 (so the fetching tests allow private
//! addresses and `http:`; the refusal tests check that without that permission the same
//! server is never reached).

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use base64::Engine as _;
use harness::Harness;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes of a 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// A one-request-per-connection HTTP server on 127.0.0.1 with a few image paths.
struct Images {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Images {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, kind, body): (&str, &str, Vec<u8>) = match path.as_str() {
                        "/cat.png" => ("200 OK", "image/png", PNG.to_vec()),
                        "/big.png" => ("200 OK", "image/png", vec![0u8; 5000]),
                        "/page" => ("200 OK", "text/html", b"<html></html>".to_vec()),
                        "/moved" => ("302 Found", "text/plain", Vec::new()),
                        "/slow.png" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            ("200 OK", "image/png", PNG.to_vec())
                        }
                        _ => ("404 Not Found", "text/plain", b"no".to_vec()),
                    };
                    let mut out = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nlocation: /cat.png\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    out.extend_from_slice(&body);
                    let _ = conn.write_all(&out).await;
                });
            }
        });
        Self { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn with_image(url: &str) -> Value {
    json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}}
    ]}]})
}

const LOCAL_FETCH: &str = "
image_fetch:
  enabled: true
  https_only: false
  allow_private_addresses: true
  max_bytes: 1000
  timeout_ms: 500
";

#[tokio::test]
async fn a_fetched_image_goes_inline_to_bedrock() {
    let images = Images::start().await;
    let h = Harness::start_with(LOCAL_FETCH).await;
    let (status, _, v) = h.chat_json(with_image(&images.url("/cat.png"))).await;
    assert_eq!(status, 200, "{v}");
    let rec = h.server.recorded();
    assert_eq!(rec.len(), 1);
    let block = &rec[0].body["messages"][0]["content"][1]["image"];
    assert_eq!(block["format"], "png", "{block}");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(block["source"]["bytes"].as_str().expect("bytes"))
        .expect("base64");
    assert_eq!(sent, PNG);
    assert_eq!(images.hits(), 1);
}

#[tokio::test]
async fn unusable_images_are_a_400_naming_the_part() {
    let images = Images::start().await;
    let h = Harness::start_with(LOCAL_FETCH).await;
    for (path, why) in [
        ("/big.png", "larger than 1000 bytes"),
        ("/page", "content type is `text/html`"),
        ("/moved", "redirects are not followed"),
        ("/missing.png", "404"),
        ("/slow.png", "within 500 ms"),
    ] {
        let (status, _, v) = h.chat_json(with_image(&images.url(path))).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["error"]["param"], "messages[0].content[1].image_url.url");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{path}: {message}");
    }
    assert!(h.server.recorded().is_empty(), "no model call");
}

#[tokio::test]
async fn private_addresses_and_http_are_refused_unless_allowed() {
    let images = Images::start().await;
    // Private addresses refused: literal and by name.
    let h = Harness::start_with("\nimage_fetch:\n  enabled: true\n  https_only: false\n").await;
    for url in [
        images.url("/cat.png"),
        format!("http://localhost:{}/cat.png", images.port),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/cat.png".to_string(),
    ] {
        let (status, _, v) = h.chat_json(with_image(&url)).await;
        assert_eq!(status, 400, "{url}: {v}");
        assert_eq!(v["error"]["param"], "messages[0].content[1].image_url.url");
    }
    assert_eq!(images.hits(), 0, "the private server was reached");
    // https only by default.
    let h =
        Harness::start_with("\nimage_fetch:\n  enabled: true\n  allow_private_addresses: true\n")
            .await;
    let (status, _, v) = h.chat_json(with_image(&images.url("/cat.png"))).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("only https"),
        "{v}"
    );
    assert_eq!(images.hits(), 0);
    assert!(h.server.recorded().is_empty());
}

#[test]
fn bad_image_fetch_settings_fail_the_config() {
    let dir = common::copy_default_config();
    let models = std::fs::read_to_string(dir.path().join("models.yaml")).expect("models");
    std::fs::write(
        dir.path().join("models.yaml"),
        models + "\nimage_fetch:\n  enabled: true\n  max_bytes: 0\n  timeout_ms: 0\n",
    )
    .expect("write");
    let errors = pennyworth::CompiledConfig::load(dir.path())
        .expect_err("invalid")
        .to_string();
    assert!(errors.contains("image_fetch.max_bytes"), "{errors}");
    assert!(errors.contains("image_fetch.timeout_ms"), "{errors}");
}
