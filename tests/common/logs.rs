//! Captures the JSON log lines written on the current thread (a `#[tokio::test]` runtime
//! polls the engine, its handlers and their streams on that thread).
//!
//! One global subscriber is installed for the whole test binary and writes each line to the
//! buffer of the thread that logged it, if that thread captures: with thread-local
//! subscribers, tracing caches a callsite's interest across threads, and a line logged while
//! another test's subscriber came and went could be lost.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static BUFFER: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

/// The captured lines; logging goes to them while the guard lives.
pub struct Captured {
    buf: Buffer,
}

impl Drop for Captured {
    fn drop(&mut self) {
        BUFFER.with(|b| b.borrow_mut().take());
    }
}

struct Sink;

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        BUFFER.with(|b| {
            if let Some(buf) = b.borrow().as_ref() {
                buf.lock().expect("log buffer").extend_from_slice(data);
            }
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing `info` and above as JSON lines on this thread.
pub fn capture() -> Captured {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    let buf: Buffer = Arc::new(Mutex::new(Vec::new()));
    BUFFER.with(|b| *b.borrow_mut() = Some(buf.clone()));
    Captured { buf }
}

impl Captured {
    /// The `fields` of every line of `target` so far.
    pub fn records(&self, target: &str) -> Vec<serde_json::Value> {
        let text =
            String::from_utf8(self.buf.lock().expect("log buffer").clone()).expect("UTF-8 log");
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == target)
            .map(|v| v["fields"].clone())
            .collect()
    }
}
