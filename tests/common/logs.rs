//! Captures the JSON log lines written on the current thread (a `#[tokio::test]` runtime
//! polls the engine, its handlers and their streams on that thread).

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The captured lines; logging goes to them while the guard lives.
pub struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing `info` and above as JSON lines on this thread.
pub fn capture() -> Captured {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // A callsite first hit on another thread while no subscriber listened may have cached
    // "never"; ask every callsite again now that this one listens.
    tracing::callsite::rebuild_interest_cache();
    Captured { buf, _guard: guard }
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
