//! Rendering a neutral event stream as a dialect's server-sent events: the one loop every
//! streamed dialect shares (each event, then the end, rendered until the renderer says the
//! answer is over), and the one response head.

use crate::body::{Body, BoxError};
use crate::inference::{Event, EventStream};
use crate::providers::ProviderError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderValue, Response, header};

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
