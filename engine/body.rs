//! The response body both front ends share: a buffered body or a stream of chunks (SSE).

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Error type of a streamed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed stream of body chunks.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A response body: either complete, or produced chunk by chunk.
pub enum Body {
    /// A complete body (taken once).
    Full(Option<Bytes>),
    /// A body produced as it is polled; every chunk is sent as soon as it is ready.
    Stream(ChunkStream),
}

impl Body {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Full(None)
        } else {
            Body::Full(Some(bytes))
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body::Full(None)
    }

    /// A streamed body.
    pub fn stream(stream: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static) -> Self {
        Body::Stream(Box::pin(stream))
    }

    /// This body, then (before it ends) a wait of at most `bound` until `store` has written
    /// every usage record handed to it, the call's own included (a stream's meter records
    /// when the stream is done, before the wait starts).
    pub fn then_flush(
        self,
        store: std::sync::Arc<dyn crate::usage::store::UsageStore>,
        bound: std::time::Duration,
    ) -> Self {
        use futures_util::StreamExt;
        let flush = futures_util::stream::once(async move {
            match tokio::time::timeout(bound, store.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target: "pennyworth::usage", error = %e, "ledger flush failed");
                }
                Err(_) => tracing::warn!(
                    target: "pennyworth::usage",
                    bound_ms = bound.as_millis() as u64,
                    "usage records still being written when the answer ended"
                ),
            }
        })
        .filter_map(|()| std::future::ready(None::<Result<Bytes, BoxError>>));
        match self {
            Body::Full(None) => Body::stream(flush),
            Body::Full(Some(b)) => {
                Body::stream(futures_util::stream::once(std::future::ready(Ok(b))).chain(flush))
            }
            Body::Stream(s) => Body::stream(s.chain(flush)),
        }
    }

    /// Reads the whole body (tests and adapters that cannot stream).
    pub async fn collect(self) -> Result<Bytes, BoxError> {
        match self {
            Body::Full(b) => Ok(b.unwrap_or_default()),
            Body::Stream(mut s) => {
                use futures_util::StreamExt;
                let mut out = Vec::new();
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk?);
                }
                Ok(Bytes::from(out))
            }
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(s) => s
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, Bytes::len) as u64),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}
