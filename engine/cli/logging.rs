//! Log output of the `pennyworth` command (stderr).
//!
//! - Colours only when stderr is a terminal (and `NO_COLOR` is unset), so a log piped to a
//!   file or `tee` has no escape codes.
//! - A failed write (a dead pipe after `serve 2>&1 | tee log` and Ctrl-C) is dropped silently:
//!   the default reports it with `eprintln!`, which panics when stderr is that same dead pipe.
//! - In text lines a plain string value is written bare (`request_id=req_1a`), the way a
//!   `Display` value is, so the same field looks the same in every line whichever way the code
//!   recorded it; a value with spaces, quotes or other punctuation stays quoted.
//! - Logs cannot be forged: a value (or message) with a control character (a newline, an ANSI
//!   escape) is written escaped, so a request-supplied user or key name cannot start a fake
//!   line or colour the terminal. (JSON lines are escaped by the JSON encoder.)

use std::fmt;
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: `PENNYWORTH_LOG` filter (default `info`), text or JSON
/// (`PENNYWORTH_LOG_FORMAT=json`) on stderr.
pub fn init() {
    init_with(None);
}

/// [`init`] with the tracing export layer (`pennyworth serve` with an exporter configured).
/// The log output takes no spans of the gateway's own ([`crate::telemetry::TARGET`]), so its
/// lines look the same with tracing on or off, and with tracing off those spans cost nothing.
pub fn init_with(traces: Option<crate::telemetry::export::BoxLayer>) {
    let filter =
        EnvFilter::try_from_env("PENNYWORTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PENNYWORTH_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours(std::io::stderr().is_terminal()))
        .log_internal_errors(false);
    let logs = filter.and(not_trace_spans());
    let off = traces.is_none().then(not_trace_spans);
    let registry = tracing_subscriber::registry().with(traces);
    if json {
        registry
            .with(layer.json().with_filter(logs))
            .with(off)
            .init();
    } else {
        registry
            .with(layer.compact().fmt_fields(PlainFields).with_filter(logs))
            .with(off)
            .init();
    }
}

/// A log filter that leaves the gateway's trace spans to the export layer. Without that layer
/// it goes last, as a global filter: a per-layer filter alone leaves the spans' call sites
/// "sometimes" enabled, so every span would still ask the filters (some 100 ns each), where a
/// global `never` disables them at the call site.
pub fn not_trace_spans()
-> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|m| {
        !(m.is_span() && m.target() == crate::telemetry::TARGET)
    })
}

/// Whether to colour output going to a terminal (`terminal`), honouring `NO_COLOR`.
pub fn colours(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Field formatter of text lines: [`DefaultVisitor`], with plain strings unquoted.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> MakeVisitor<Writer<'w>> for PlainFields {
    type Visitor = PlainVisitor<'w>;

    fn make_visitor(&self, target: Writer<'w>) -> Self::Visitor {
        PlainVisitor(DefaultVisitor::new(target, true))
    }
}

/// See [`PlainFields`].
#[derive(Debug)]
pub struct PlainVisitor<'w>(DefaultVisitor<'w>);

/// A string that reads the same with or without quotes: an id, a path, a name.
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '@' | '+'))
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), everything else as it is.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

impl PlainVisitor<'_> {
    /// Writes already formatted text: as it is unless it holds a control character.
    fn record_text(&mut self, field: &Field, text: &str) {
        if !text.chars().any(char::is_control) {
            self.0.record_debug(field, &format_args!("{text}"));
        } else if field.name() == "message" {
            let escaped = escape_controls(text);
            self.0.record_debug(field, &format_args!("{escaped}"));
        } else {
            // Quoted and escaped by `Debug`.
            self.0.record_str(field, text);
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" && is_plain(value) {
            self.0.record_debug(field, &format_args!("{value}"));
        } else if field.name() == "message" {
            self.record_text(field, value);
        } else {
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = value.to_string();
        if text.chars().any(char::is_control) {
            self.record_text(field, &text);
        } else {
            self.0.record_error(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields (Display) arrive here unescaped: check what they print.
        let text = format!("{value:?}");
        self.record_text(field, &text);
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn str_and_display_fields_look_the_same() {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .compact()
            .fmt_fields(PlainFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "req_00ab";
            tracing::info!(request_id = %id, "display");
            tracing::info!(request_id = id, note = "two words", "str");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert!(line.contains("request_id=req_00ab"), "{line}");
            assert!(!line.contains("request_id=\""), "{line}");
        }
        assert!(lines[1].contains("note=\"two words\""), "{text}");
        assert!(!text.contains('\u{1b}'), "no escape codes: {text}");
    }

    #[test]
    fn request_supplied_strings_cannot_forge_lines_or_colours() {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .compact()
            .fmt_fields(PlainFields)
            .finish();
        let evil = "eve\n2026-11-26T00:00:00Z  INFO pennyworth::audit: management actor=admin \u{1b}[31mred";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = %evil, "display");
            tracing::info!(user = evil, "str");
            tracing::info!(user = ?evil, "debug");
            tracing::info!("message {evil}");
            let e = std::io::Error::other(evil);
            tracing::info!(error = &e as &(dyn std::error::Error + 'static), "error");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("eve\\n2026"), "{text}");
    }

    #[test]
    fn plain_values() {
        assert!(is_plain("req_00ab"));
        assert!(is_plain("/v1/chat/completions"));
        assert!(is_plain("carol@example.com"));
        assert!(!is_plain(""));
        assert!(!is_plain("a b"));
        assert!(!is_plain("say \"hi\""));
        assert!(!is_plain("x=1"));
    }
}
