//! ConverseStream answers: `application/vnd.amazon.eventstream` frames decoded from the
//! response body as they arrive (prelude and message CRCs checked, headers read in place,
//! no allocation per frame beyond the event's own strings), each event's JSON payload read
//! into its typed struct and mapped straight into the stream's queue. A frame inside one of
//! the body's data chunks is a slice of it (no copy); one split across chunks is gathered.

use super::errors;
use super::response::{StreamEvent, StreamMapper};
use super::wire::ErrorBody;
use crate::inference::{Event, EventStream};
use crate::providers::ProviderError;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::VecDeque;

/// Bytes of the prelude (total length, headers length, prelude CRC).
const PRELUDE: usize = 12;
/// Smallest frame: prelude and message CRC.
const MIN_FRAME: usize = PRELUDE + 4;
/// Largest frame the SDK accepts (16 MiB).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The headers of a frame the gateway reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `:message-type` (`event`, `exception`, `error`).
    pub message_type: &'a str,
    /// `:event-type`.
    pub event_type: &'a str,
    /// `:exception-type`.
    pub exception_type: &'a str,
}

/// Why a frame could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The length of the frame at the start of `buf`, once its prelude is there.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < PRELUDE {
        return Ok(None);
    }
    let total = be_u32(buf) as usize;
    let headers = be_u32(&buf[4..]) as usize;
    if !(MIN_FRAME..=MAX_FRAME).contains(&total) || headers > total - MIN_FRAME {
        return Err(FrameError("invalid frame lengths"));
    }
    if crc32fast::hash(&buf[..8]) != be_u32(&buf[8..]) {
        return Err(FrameError("prelude checksum mismatch"));
    }
    Ok(Some(total))
}

/// Splits one whole frame into its headers and payload (lengths and the message CRC, which
/// covers the prelude too, checked).
pub fn parse_frame(frame: &[u8]) -> Result<(Headers<'_>, &[u8]), FrameError> {
    let total = frame.len();
    if total < MIN_FRAME
        || be_u32(frame) as usize != total
        || be_u32(&frame[4..]) as usize > total - MIN_FRAME
    {
        return Err(FrameError("invalid frame lengths"));
    }
    if crc32fast::hash(&frame[..total - 4]) != be_u32(&frame[total - 4..]) {
        return Err(FrameError("message checksum mismatch"));
    }
    let headers_len = be_u32(&frame[4..]) as usize;
    let mut h = &frame[PRELUDE..PRELUDE + headers_len];
    let payload = &frame[PRELUDE + headers_len..total - 4];
    let mut out = Headers::default();
    let short = FrameError("truncated header");
    while !h.is_empty() {
        let name_len = usize::from(h[0]);
        if h.len() < 2 + name_len {
            return Err(short);
        }
        let name = &h[1..1 + name_len];
        let kind = h[1 + name_len];
        h = &h[2 + name_len..];
        let fixed = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => {
                if h.len() < 2 {
                    return Err(short);
                }
                let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
                if h.len() < 2 + len {
                    return Err(short);
                }
                let value = &h[2..2 + len];
                if kind == 7 {
                    let value =
                        std::str::from_utf8(value).map_err(|_| FrameError("header not UTF-8"))?;
                    match name {
                        b":message-type" => out.message_type = value,
                        b":event-type" => out.event_type = value,
                        b":exception-type" => out.exception_type = value,
                        _ => {}
                    }
                }
                h = &h[2 + len..];
                continue;
            }
            _ => return Err(FrameError("unknown header type")),
        };
        if h.len() < fixed {
            return Err(short);
        }
        h = &h[fixed..];
    }
    Ok((out, payload))
}

/// What one frame means.
#[derive(Debug)]
pub enum Decoded {
    /// An event the gateway reads.
    Event(StreamEvent),
    /// An event it does not (`messageStart`, unknown types).
    Skip,
    /// An exception event: its error code and message.
    Exception(String, Option<String>),
}

/// The error code of an exception event type (`throttlingException` → `ThrottlingException`,
/// as the SDK's modeled errors name them); unmodeled types take the payload's code, if any.
fn exception_code(kind: &str, payload: &ErrorBody) -> String {
    match kind {
        "throttlingException"
        | "validationException"
        | "serviceUnavailableException"
        | "internalServerException"
        | "modelStreamErrorException" => {
            let mut code = String::with_capacity(kind.len());
            let mut chars = kind.chars();
            if let Some(c) = chars.next() {
                code.push(c.to_ascii_uppercase());
            }
            code.extend(chars);
            code
        }
        _ => payload
            .kind
            .as_deref()
            .or(payload.code.as_deref())
            .map(errors::error_code)
            .unwrap_or("Unknown")
            .to_string(),
    }
}

/// Decodes one frame.
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let (headers, payload) = parse_frame(frame)?;
    let bad = |_| FrameError("event payload does not match its type");
    match headers.message_type {
        "event" => Ok(match headers.event_type {
            "contentBlockStart" => Decoded::Event(StreamEvent::BlockStart(
                serde_json::from_slice(payload).map_err(bad)?,
            )),
            "contentBlockDelta" => Decoded::Event(StreamEvent::BlockDelta(
                serde_json::from_slice(payload).map_err(bad)?,
            )),
            "contentBlockStop" => Decoded::Event(StreamEvent::BlockStop(
                serde_json::from_slice(payload).map_err(bad)?,
            )),
            "messageStop" => Decoded::Event(StreamEvent::MessageStop(
                serde_json::from_slice(payload).map_err(bad)?,
            )),
            "metadata" => Decoded::Event(StreamEvent::Metadata(
                serde_json::from_slice(payload).map_err(bad)?,
            )),
            _ => Decoded::Skip,
        }),
        "exception" => {
            let body: ErrorBody = serde_json::from_slice(payload).unwrap_or_default();
            Ok(Decoded::Exception(
                exception_code(headers.exception_type, &body),
                body.message,
            ))
        }
        _ => Err(FrameError("unrecognized :message-type")),
    }
}

struct State {
    body: Incoming,
    /// The body's latest data not yet decoded; frames are cut from it without a copy.
    chunk: Bytes,
    /// A frame that straddles the body's data chunks, gathered.
    partial: BytesMut,
    mapper: StreamMapper,
    pending: VecDeque<Event>,
    done: bool,
    alias: String,
}

impl State {
    fn failure(&self, e: FrameError) -> ProviderError {
        errors::stream_failure(&self.alias, e.0)
    }

    /// The next whole frame, reading the body as needed (`None`: the body ended cleanly
    /// between frames). Frames inside one data chunk are slices of it; only a frame split
    /// across chunks is copied.
    async fn frame(&mut self) -> Result<Option<Bytes>, ProviderError> {
        loop {
            if self.partial.is_empty() {
                match frame_len(&self.chunk) {
                    Ok(Some(total)) if self.chunk.len() >= total => {
                        return Ok(Some(self.chunk.split_to(total)));
                    }
                    Ok(_) => {
                        self.partial.extend_from_slice(&self.chunk);
                        self.chunk.clear();
                    }
                    Err(e) => return Err(self.failure(e)),
                }
            } else {
                self.partial.extend_from_slice(&self.chunk);
                self.chunk.clear();
                match frame_len(&self.partial) {
                    Ok(Some(total)) if self.partial.len() >= total => {
                        let frame = self.partial.split_to(total).freeze();
                        self.chunk = self.partial.split().freeze();
                        return Ok(Some(frame));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(self.failure(e)),
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.chunk = data;
                    }
                }
                Some(Err(e)) => {
                    let detail = format!("reading the event stream failed: {e}");
                    return Err(errors::stream_failure(&self.alias, &detail));
                }
                None if self.partial.is_empty() => return Ok(None),
                None => {
                    return Err(errors::stream_failure(
                        &self.alias,
                        "the event stream ended inside a frame",
                    ));
                }
            }
        }
    }
}

/// The events of a ConverseStream answer, each mapped as soon as it is decoded. Dropping the
/// stream drops the body and with it the upstream connection.
pub fn events(body: Incoming, alias: &str) -> EventStream {
    let state = State {
        body,
        chunk: Bytes::new(),
        partial: BytesMut::new(),
        mapper: StreamMapper::default(),
        pending: VecDeque::new(),
        done: false,
        alias: alias.to_string(),
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                return Some((Ok(e), s));
            }
            if s.done {
                return None;
            }
            let failed = match s.frame().await {
                Ok(Some(frame)) => match decode(&frame) {
                    Ok(Decoded::Event(event)) => {
                        s.mapper.map_into(event, &mut s.pending);
                        continue;
                    }
                    Ok(Decoded::Skip) => continue,
                    Ok(Decoded::Exception(code, message)) => {
                        errors::from_exception(&s.alias, &code, message.as_deref())
                    }
                    Err(e) => errors::stream_failure(&s.alias, e.0),
                },
                Ok(None) => return None,
                Err(e) => e,
            };
            s.done = true;
            return Some((Err(failed), s));
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

    fn frame(headers: &[(&str, HeaderValue)], payload: &str) -> Vec<u8> {
        let mut m = Message::new(Bytes::from(payload.to_string()));
        for (n, v) in headers {
            m = m.add_header(Header::new(n.to_string(), v.clone()));
        }
        let mut buf = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&m, &mut buf).unwrap();
        buf
    }

    fn s(v: &str) -> HeaderValue {
        HeaderValue::String(v.to_string().into())
    }

    #[test]
    fn headers_of_every_type_are_skipped_or_read() {
        let f = frame(
            &[
                ("flag", HeaderValue::Bool(true)),
                ("byte", HeaderValue::Byte(3)),
                ("short", HeaderValue::Int16(-2)),
                (":event-type", s("contentBlockDelta")),
                ("int", HeaderValue::Int32(7)),
                ("long", HeaderValue::Int64(9)),
                (
                    "blob",
                    HeaderValue::ByteArray(Bytes::from_static(b"\x00\x01")),
                ),
                (":message-type", s("event")),
                (
                    "uuid",
                    HeaderValue::Uuid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
                ),
                (":content-type", s("application/json")),
            ],
            r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        );
        assert_eq!(frame_len(&f), Ok(Some(f.len())));
        let (h, payload) = parse_frame(&f).unwrap();
        assert_eq!(h.message_type, "event");
        assert_eq!(h.event_type, "contentBlockDelta");
        assert_eq!(payload, br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#);
        let Ok(Decoded::Event(StreamEvent::BlockDelta(d))) = decode(&f) else {
            panic!("a delta");
        };
        assert_eq!(d.delta.unwrap().text.as_deref(), Some("hi"));
    }

    #[test]
    fn damaged_frames_are_refused() {
        let f = frame(&[(":message-type", s("event"))], "{}");
        let mut bad = f.clone();
        let last = bad.len() - 5;
        bad[last] ^= 1;
        assert_eq!(
            parse_frame(&bad).err(),
            Some(FrameError("message checksum mismatch"))
        );
        let mut bad = f.clone();
        bad[3] ^= 1;
        assert!(frame_len(&bad).is_err());
        assert_eq!(frame_len(&f[..5]), Ok(None));
        assert!(decode(&frame(&[(":message-type", s("error"))], "{}")).is_err());
    }

    #[test]
    fn exceptions_carry_the_modeled_code() {
        let f = frame(
            &[
                (":message-type", s("exception")),
                (":exception-type", s("throttlingException")),
            ],
            r#"{"message":"slow down"}"#,
        );
        let Ok(Decoded::Exception(code, message)) = decode(&f) else {
            panic!("an exception");
        };
        assert_eq!(code, "ThrottlingException");
        assert_eq!(message.as_deref(), Some("slow down"));
        let f = frame(
            &[
                (":message-type", s("exception")),
                (":exception-type", s("somethingNew")),
            ],
            r#"{"message":"?"}"#,
        );
        let Ok(Decoded::Exception(code, _)) = decode(&f) else {
            panic!("an exception");
        };
        assert_eq!(code, "Unknown");
    }
}
