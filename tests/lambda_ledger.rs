//! On Lambda the instance is frozen as soon as an invocation's answer ends, so the usage record
//! of a call must be written before the answer ends, not by a task that may never run again.
//! A store whose writes take 300 ms shows whether the end of the answer waited for them.

mod common;

use async_trait::async_trait;
use base64::Engine as _;
use pennyworth::usage::store::{Entry, Query, Row, Scope, Spend, UsageError, UsageStore, Window};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Writes take `delay`; counts what has been written.
#[derive(Debug)]
struct SlowStore {
    delay: Duration,
    pending: Arc<(AtomicUsize, Notify)>,
    written: Arc<AtomicUsize>,
}

impl SlowStore {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            pending: Arc::new((AtomicUsize::new(0), Notify::new())),
            written: Arc::new(AtomicUsize::new(0)),
        })
    }
}

#[async_trait]
impl UsageStore for SlowStore {
    fn kind(&self) -> &'static str {
        "slow"
    }

    fn record(&self, _entry: Entry) {
        self.pending.0.fetch_add(1, Ordering::AcqRel);
        let (pending, written, delay) = (self.pending.clone(), self.written.clone(), self.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            written.fetch_add(1, Ordering::AcqRel);
            if pending.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                pending.1.notify_waiters();
            }
        });
    }

    async fn flush(&self) -> Result<(), UsageError> {
        loop {
            let notified = self.pending.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.0.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            notified.await;
        }
    }

    async fn spend(&self, _: &str, _: Option<&str>, _: i64) -> Result<Spend, UsageError> {
        Ok(Spend::default())
    }

    async fn admit(&self, scopes: &[Scope], _: i64) -> Result<Vec<Window>, UsageError> {
        Ok(scopes.iter().map(|_| Window::default()).collect())
    }

    async fn query(&self, _: &Query) -> Result<Vec<Row>, UsageError> {
        Ok(Vec::new())
    }
}

fn event(name: &str, key: &str) -> lambda_http::Request {
    let body = r#"{"model":"echo","messages":[{"role":"user","content":"hello"}]}"#;
    let text =
        std::fs::read_to_string(common::repo_root().join("tests/fixtures/lambda").join(name))
            .expect("read event")
            .replace("{{key}}", key)
            .replace(
                "{{body_base64}}",
                &base64::engine::general_purpose::STANDARD.encode(body),
            );
    lambda_http::request::from_str(&text).expect("event decodes")
}

async fn answer_then_count(fixture: &str) -> (u16, String, usize) {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let store = SlowStore::new(Duration::from_millis(300));
    let engine = engine.usage_store(store.clone());
    let response = pennyworth::lambda::handle(&engine, event(fixture, dir.key("admin"))).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body");
    // The answer has ended: this is where Lambda would freeze the instance.
    let written = store.written.load(Ordering::Acquire);
    (status, String::from_utf8_lossy(&body).into_owned(), written)
}

#[tokio::test]
async fn a_buffered_answer_ends_after_its_usage_is_written() {
    let (status, body, written) = answer_then_count("http_v2_chat_base64.json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello"), "{body}");
    assert_eq!(
        written, 1,
        "the record was still in flight when the answer ended"
    );
}

#[tokio::test]
async fn a_streamed_answer_ends_after_its_usage_is_written() {
    let (status, body, written) = answer_then_count("rest_v1_chat_stream.json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert_eq!(
        written, 1,
        "the record was still in flight when the stream ended"
    );
}
