//! The `tracing` layer that turns the gateway's spans into OpenTelemetry span data, one
//! request's trace at a time.
//!
//! Each span keeps, in its registry extensions, what its exported form needs: ids, name, kind,
//! start time, attributes (keys are the fields' static names) and whether it failed. When a
//! span closes its `SpanData` joins its request's trace; when the request's root span closes
//! the whole trace goes to the [`Sink`] at once (the OTLP batch processor's queue, or one
//! nested X-Ray document). A span that outlives its root is sent alone when it closes.
//!
//! The sampling decision is made once per request, before its root span opens
//! ([`decide`]): an unsampled request's spans are disabled at their call sites, like tracing
//! off.

use super::TARGET;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample, SpanData, SpanEvents,
    SpanExporter, SpanLinks,
};
use std::borrow::Cow;
use std::cell::Cell;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Where a request's finished spans go.
pub trait Sink: Send + Sync + std::fmt::Debug + 'static {
    /// Takes the spans of one trace (or a late span alone).
    fn export(&self, spans: Vec<SpanData>);
    /// Sends what is queued; called once at exit.
    fn shutdown(&self) {}
}

/// A span exporter called on the spot (X-Ray's, whose export is one translation and one
/// non-blocking send; a test's memory).
#[derive(Debug)]
pub struct Direct<E>(pub Mutex<E>);

impl<E: SpanExporter + 'static> Sink for Direct<E> {
    fn export(&self, spans: Vec<SpanData>) {
        use futures_util::FutureExt as _;
        if let Ok(e) = self.0.lock() {
            // The exporters used here finish without waiting; one that would is not waited for.
            let _ = e.export(spans).now_or_never();
        }
    }
}

/// A span exporter on a thread of its own, fed whole traces through a bounded queue (a full
/// queue drops the trace): X-Ray's translation, serialization and send leave the request's
/// thread. [`flush`] waits for it to be idle (the Lambda front end, before the invocation
/// ends).
#[derive(Debug)]
pub struct Background {
    queue: std::sync::mpsc::SyncSender<Vec<SpanData>>,
    state: Arc<Pending>,
}

/// Traces queued or being exported, and who waits for none.
#[derive(Debug, Default)]
struct Pending {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

static BACKGROUND: RwLock<Option<Arc<Pending>>> = RwLock::new(None);

impl Background {
    /// Starts the thread that runs `exporter`.
    pub fn start<E: SpanExporter + 'static>(exporter: E) -> Result<Self, String> {
        let (queue, rx) = std::sync::mpsc::sync_channel::<Vec<SpanData>>(256);
        let state = Arc::new(Pending::default());
        let thread_state = state.clone();
        std::thread::Builder::new()
            .name("pennyworth-traces".into())
            .spawn(move || {
                use futures_util::FutureExt as _;
                use std::sync::atomic::Ordering;
                while let Ok(batch) = rx.recv() {
                    let _ = exporter.export(batch).now_or_never();
                    if thread_state.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                        thread_state.idle.notify_waiters();
                    }
                }
            })
            .map_err(|e| format!("cannot start the trace exporter thread: {e}"))?;
        if let Ok(mut slot) = BACKGROUND.write() {
            *slot = Some(state.clone());
        }
        Ok(Self { queue, state })
    }
}

impl Sink for Background {
    fn export(&self, spans: Vec<SpanData>) {
        use std::sync::atomic::Ordering;
        self.state.count.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(spans).is_err() {
            self.state.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An exporter thread is running.
pub(crate) fn background() -> bool {
    BACKGROUND.read().is_ok_and(|s| s.is_some())
}

/// Waits, at most `bound`, until the traces of the requests that have ended are sent (nothing
/// to wait for without an exporter thread).
pub async fn flush(bound: std::time::Duration) {
    use std::sync::atomic::Ordering;
    let Some(state) = BACKGROUND.read().ok().and_then(|s| s.clone()) else {
        return;
    };
    let _ = tokio::time::timeout(bound, async {
        loop {
            let idle = state.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if state.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    })
    .await;
}

impl Sink for opentelemetry_sdk::trace::BatchSpanProcessor {
    fn export(&self, spans: Vec<SpanData>) {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        for s in spans {
            self.on_end(s);
        }
    }

    fn shutdown(&self) {
        let _ = opentelemetry_sdk::trace::SpanProcessor::shutdown(self);
    }
}

/// How requests are sampled and their trace ids made (the installed pipeline's).
#[derive(Debug)]
pub(crate) struct Decider {
    pub(crate) sampler: Box<dyn ShouldSample>,
    pub(crate) ids: Box<dyn IdGenerator>,
}

static DECIDER: RwLock<Option<Arc<Decider>>> = RwLock::new(None);

pub(crate) fn set_decider(d: Decider) {
    if let Ok(mut slot) = DECIDER.write() {
        *slot = Some(Arc::new(d));
    }
}

/// The trace a request's root span starts, decided before it opens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Root {
    pub(crate) trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    pub(crate) sampled: bool,
}

thread_local! {
    /// The root the next `request` span on this thread starts (set around its creation).
    static NEXT_ROOT: Cell<Option<Root>> = const { Cell::new(None) };
}

/// The trace of a request under `parent`: its id (the caller's, else a new one from the
/// pipeline's generator) and the sampler's decision. `None` when no pipeline is installed.
pub(crate) fn decide(parent: Option<super::Parent>, name: &str, server: bool) -> Option<Root> {
    let d = DECIDER.read().ok()?.clone()?;
    let trace_id = match parent {
        Some(p) => TraceId::from_bytes(p.trace_id),
        None => d.ids.new_trace_id(),
    };
    let cx = parent.map(|p| p.context());
    let kind = if server {
        SpanKind::Server
    } else {
        SpanKind::Internal
    };
    let sampled = d
        .sampler
        .should_sample(cx.as_ref(), trace_id, name, &kind, &[], &[])
        .decision
        == SamplingDecision::RecordAndSample;
    Some(Root {
        trace_id: trace_id.to_bytes(),
        parent: parent.map(|p| p.span_id),
        sampled,
    })
}

/// Opens the root span with `make` as the start of `root`.
pub(crate) fn open_root<T>(root: Root, make: impl FnOnce() -> T) -> T {
    NEXT_ROOT.with(|r| r.set(Some(root)));
    let out = make();
    NEXT_ROOT.with(|r| r.set(None));
    out
}

/// Trace id, span id and sampled flag of the current span, if it is traced.
pub(crate) fn current() -> Option<([u8; 16], [u8; 8])> {
    tracing::Span::current().with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let ext = span.extensions();
        let rec = ext.get::<Rec>()?;
        Some((rec.trace.trace_id.to_bytes(), rec.span_id.to_bytes()))
    })?
}

/// One request's trace: its spans as they close.
#[derive(Debug)]
struct Trace {
    trace_id: TraceId,
    /// `None` once the root has closed and the trace has been sent.
    spans: Mutex<Option<Vec<SpanData>>>,
}

/// What a live span keeps for its export.
#[derive(Debug)]
struct Rec {
    trace: Arc<Trace>,
    span_id: SpanId,
    parent_span_id: SpanId,
    parent_remote: bool,
    root: bool,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    attrs: Vec<KeyValue>,
    error: bool,
}

impl Visit for Rec {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "otel.name" => self.name = Cow::Owned(value.to_string()),
            "otel.kind" => {
                self.kind = match value {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    "producer" => SpanKind::Producer,
                    "consumer" => SpanKind::Consumer,
                    _ => SpanKind::Internal,
                }
            }
            "otel.status_code" => self.error = value.eq_ignore_ascii_case("error"),
            name => self.set(name, Value::from(value.to_string())),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(
            field.name(),
            Value::I64(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::F64(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl Rec {
    fn set(&mut self, key: &'static str, value: Value) {
        match self.attrs.iter_mut().find(|kv| kv.key.as_str() == key) {
            Some(kv) => kv.value = value,
            None => self
                .attrs
                .push(KeyValue::new(Key::from_static_str(key), value)),
        }
    }

    fn finish(self) -> (Arc<Trace>, bool, SpanData) {
        let data = SpanData {
            span_context: SpanContext::new(
                self.trace.trace_id,
                self.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: self.parent_span_id,
            parent_span_is_remote: self.parent_remote,
            span_kind: self.kind,
            name: self.name,
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: self.attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if self.error {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: scope(),
        };
        (self.trace, self.root, data)
    }
}

fn scope() -> InstrumentationScope {
    static SCOPE: std::sync::OnceLock<InstrumentationScope> = std::sync::OnceLock::new();
    SCOPE
        .get_or_init(|| InstrumentationScope::builder("pennyworth").build())
        .clone()
}

/// Takes the gateway's spans of sampled requests: a `request` span whose trace was decided
/// sampled, and any span opened inside a span it takes.
#[derive(Debug, Clone, Copy)]
pub struct Sampled;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for Sampled {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if !(meta.is_span() && meta.target() == TARGET) {
            return false;
        }
        if meta.name() == "request" {
            return NEXT_ROOT.with(|r| r.get().is_some_and(|r| r.sampled));
        }
        cx.lookup_current().is_some()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.is_span() && meta.target() == TARGET {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

/// The layer (use it with the [`Sampled`] filter).
#[derive(Debug)]
pub struct TraceLayer {
    sink: Arc<dyn Sink>,
    ids: RandomIdGenerator,
}

impl TraceLayer {
    pub(crate) fn new(sink: Arc<dyn Sink>) -> Self {
        Self {
            sink,
            ids: RandomIdGenerator::default(),
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TraceLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        let Some(span) = cx.span(id) else { return };
        let (trace, parent_span_id, parent_remote, root) = match NEXT_ROOT.with(Cell::get) {
            // The request's root span (see `open_root`).
            Some(r) => {
                if !r.sampled {
                    return;
                }
                let trace = Arc::new(Trace {
                    trace_id: TraceId::from_bytes(r.trace_id),
                    spans: Mutex::new(Some(Vec::with_capacity(16))),
                });
                let parent = r.parent.map_or(SpanId::INVALID, SpanId::from_bytes);
                (trace, parent, r.parent.is_some(), true)
            }
            None => {
                let Some(parent) = span.parent() else { return };
                let ext = parent.extensions();
                let Some(p) = ext.get::<Rec>() else { return };
                (p.trace.clone(), p.span_id, false, false)
            }
        };
        let meta = attrs.metadata();
        let mut rec = Rec {
            trace,
            span_id: self.ids.new_span_id(),
            parent_span_id,
            parent_remote,
            root,
            name: Cow::Borrowed(meta.name()),
            kind: SpanKind::Internal,
            start: SystemTime::now(),
            attrs: Vec::with_capacity(meta.fields().len()),
            error: false,
        };
        attrs.record(&mut rec);
        span.extensions_mut().insert(rec);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        if let Some(span) = cx.span(id)
            && let Some(rec) = span.extensions_mut().get_mut::<Rec>()
        {
            values.record(rec);
        }
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        let Some(span) = cx.span(&id) else { return };
        let Some(rec) = span.extensions_mut().remove::<Rec>() else {
            return;
        };
        let (trace, root, data) = rec.finish();
        let Ok(mut spans) = trace.spans.lock() else {
            return;
        };
        match spans.as_mut() {
            Some(v) if !root => v.push(data),
            Some(_) => {
                let mut all = spans.take().unwrap_or_default();
                drop(spans);
                all.push(data);
                self.sink.export(all);
            }
            // The root has gone: this span leaves alone.
            None => {
                drop(spans);
                self.sink.export(vec![data]);
            }
        }
    }
}

impl super::Parent {
    /// The caller's span as an OpenTelemetry context (for the sampler).
    fn context(&self) -> opentelemetry::Context {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            flags,
            true,
            TraceState::default(),
        ))
    }
}
