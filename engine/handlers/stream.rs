//! Rendering a neutral event stream as a dialect's server-sent events: the one loop every
//! streamed dialect shares (each event, then the end, rendered until the renderer says the
//! answer is over), and the one response head.

use crate::body::{Body, BoxError};
use crate::inference::{Event, EventStream};
use crate::providers::ProviderError;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderValue, Response, header};
use serde::Serialize;

/// A dialect's renderer of one streamed answer.
pub trait Renderer: Send + 'static {
    /// The bytes one event (or the end of the events, `None`) becomes, if any.
    fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes>;

    /// True once the answer is over (its end or an error was rendered); later events are
    /// dropped.
    fn ended(&self) -> bool;
}

/// The rendered bytes of `events`.
pub fn render<R: Renderer>(
    events: EventStream,
    renderer: R,
) -> impl Stream<Item = Bytes> + Send + 'static {
    events
        .map(Some)
        .chain(futures_util::stream::once(async { None }))
        .scan(renderer, |r, event| {
            let out = if r.ended() {
                None
            } else {
                Some(r.on_event(event))
            };
            async move { out }
        })
        .filter_map(|b| async move { b })
}

/// A `text/event-stream` response of `first` (if any) and then `rest`.
pub fn sse_response<S>(first: Option<Bytes>, rest: S) -> Response<Body>
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let body = futures_util::stream::iter(first)
        .chain(rest)
        .map(Ok::<Bytes, BoxError>);
    let mut response = Response::new(Body::stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The output buffer of one stream: events are written into it and split off as `Bytes`
/// when handed on, so once the chunks sent earlier have been written to the socket (and
/// dropped) the next ones reuse the same allocation.
#[derive(Debug, Default)]
pub struct SseBuf(BytesMut);

impl SseBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self(BytesMut::with_capacity(1024))
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Appends `value` as JSON (nothing if it cannot be serialized).
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) {
        let len = self.0.len();
        if serde_json::to_writer((&mut self.0).writer(), value).is_err() {
            self.0.truncate(len);
        }
    }

    /// Appends a `data:` event of `value` as JSON.
    pub fn data<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.put(b"data: ");
        self.json(value);
        self.put(b"\n\n");
    }

    /// Appends a `data:` event of these bytes.
    pub fn data_bytes(&mut self, json: &[u8]) {
        self.put(b"data: ");
        self.put(json);
        self.put(b"\n\n");
    }

    /// Appends a named event of `value` as JSON.
    pub fn event<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.put(b"event: ");
        self.put(name.as_bytes());
        self.put(b"\ndata: ");
        self.json(value);
        self.put(b"\n\n");
    }

    /// What was written since the last call, if anything.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.0.is_empty()).then(|| self.0.split().freeze())
    }
}
