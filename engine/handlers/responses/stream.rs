//! The streamed Responses event sequence, driven by neutral events: `response.created`,
//! `response.in_progress`, output items added, their deltas and `.done` events, and
//! `response.completed` (or `.incomplete`, or `error` then `response.failed`). Every event
//! carries a `sequence_number`.

use super::render::{self, Envelope};
use super::types::{Extras, SealedReasoning};
use crate::errors::ApiError;
use crate::handlers::stream::SseBuf;
use crate::inference::{BlockStart, Delta, Event, StopReason, Usage};
use crate::providers::ProviderError;
use crate::usage::StreamMeter;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

const OUTPUT_TEXT_DELTA: &str = "response.output_text.delta";
const REASONING_DELTA: &str = "response.reasoning_summary_text.delta";

/// A `*.delta` event, fields in the order the other events have them (`type` and
/// `sequence_number` last).
#[derive(Serialize)]
struct DeltaEvent<'a> {
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
}

enum Kind {
    Message,
    Reasoning {
        signature: Option<String>,
    },
    Redacted {
        data: String,
    },
    Call {
        call_id: String,
        name: String,
        custom: bool,
    },
}

struct Open {
    neutral: u32,
    output_index: usize,
    id: String,
    kind: Kind,
    buf: String,
}

/// The state of one streamed response.
pub struct StreamState {
    envelope: Envelope,
    extras: Extras,
    seq: u64,
    open: Vec<Open>,
    done: Vec<(usize, Value)>,
    reasoning_chars: usize,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    /// Nothing more to send.
    pub ended: bool,
    meter: StreamMeter,
    /// The events being written.
    out: SseBuf,
}

impl StreamState {
    /// A new stream's state.
    pub fn new(envelope: Envelope, extras: Extras, meter: StreamMeter) -> Self {
        Self {
            envelope,
            extras,
            seq: 0,
            open: Vec::new(),
            done: Vec::new(),
            reasoning_chars: 0,
            stop: None,
            usage: None,
            ended: false,
            meter,
            out: SseBuf::new(),
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out.event(kind, &data);
    }

    /// A delta event (the per-chunk path: no `Value` tree).
    fn emit_delta(&mut self, pos: usize, kind: &'static str, delta: &str) {
        let o = &self.open[pos];
        let (content_index, summary_index, logprobs) = match kind {
            OUTPUT_TEXT_DELTA => (Some(0), None, Some([])),
            REASONING_DELTA => (None, Some(0), None),
            _ => (None, None, None),
        };
        let event = DeltaEvent {
            item_id: &o.id,
            output_index: o.output_index,
            content_index,
            summary_index,
            delta,
            logprobs,
            kind,
            sequence_number: self.seq,
        };
        self.seq += 1;
        self.out.event(kind, &event);
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Bytes {
        let r = self.envelope.object(
            "in_progress",
            Vec::new(),
            Value::Null,
            Value::Null,
            Value::Null,
        );
        self.emit("response.created", json!({"response": r}));
        self.emit("response.in_progress", json!({"response": r}));
        self.out.take().unwrap_or_default()
    }

    fn open_item(&mut self, neutral: u32, start: BlockStart) {
        let output_index = self.done.len() + self.open.len();
        let (id, kind, item) = match start {
            BlockStart::Text => {
                let id = render::new_id("msg");
                let item = render::message_item(&id, "", "in_progress");
                (id, Kind::Message, item)
            }
            BlockStart::Reasoning => {
                let id = render::new_id("rs");
                let item = json!({"id": id, "type": "reasoning", "summary": []});
                (id, Kind::Reasoning { signature: None }, item)
            }
            BlockStart::RedactedReasoning { data } => {
                let id = render::new_id("rs");
                let item = json!({"id": id, "type": "reasoning", "summary": []});
                (id, Kind::Redacted { data }, item)
            }
            BlockStart::ToolUse { id: call_id, name } => {
                let custom = self.extras.custom_tools.contains(&name);
                let id = render::new_id(if custom { "ctc" } else { "fc" });
                let item = render::call_item(
                    &id,
                    &call_id,
                    &name,
                    &Value::Null,
                    &self.extras,
                    "in_progress",
                );
                (
                    id,
                    Kind::Call {
                        call_id,
                        name,
                        custom,
                    },
                    item,
                )
            }
        };
        self.emit(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        match &kind {
            Kind::Message => self.emit(
                "response.content_part.added",
                json!({
                    "item_id": id, "output_index": output_index, "content_index": 0,
                    "part": render::text_part(""),
                }),
            ),
            Kind::Reasoning { .. } if self.extras.summary => self.emit(
                "response.reasoning_summary_part.added",
                json!({
                    "item_id": id, "output_index": output_index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }),
            ),
            _ => {}
        }
        self.open.push(Open {
            neutral,
            output_index,
            id,
            kind,
            buf: String::new(),
        });
    }

    fn delta(&mut self, neutral: u32, delta: Delta) {
        let summary = self.extras.summary;
        let Some(pos) = self.open.iter().position(|o| o.neutral == neutral) else {
            return;
        };
        let o = &mut self.open[pos];
        let (kind, text) = match (&mut o.kind, delta) {
            (Kind::Message, Delta::Text(t)) => (OUTPUT_TEXT_DELTA, t),
            (Kind::Reasoning { .. }, Delta::Reasoning(t)) => {
                if !summary {
                    o.buf.push_str(&t);
                    return;
                }
                (REASONING_DELTA, t)
            }
            (Kind::Reasoning { signature }, Delta::Signature(s)) => {
                signature.get_or_insert_with(String::new).push_str(&s);
                return;
            }
            (Kind::Call { custom, .. }, Delta::ToolInput(j)) => {
                if *custom {
                    // The free-form input is inside the JSON arguments: given whole at the
                    // end of the call.
                    o.buf.push_str(&j);
                    return;
                }
                ("response.function_call_arguments.delta", j)
            }
            _ => return,
        };
        o.buf.push_str(&text);
        self.emit_delta(pos, kind, &text);
    }

    fn close_item(&mut self, pos: usize) {
        let o = self.open.remove(pos);
        let base = json!({"item_id": o.id, "output_index": o.output_index});
        let with = |mut v: Value, k: &str, x: Value| {
            v[k] = x;
            v
        };
        let item = match o.kind {
            Kind::Message => {
                let mut d = with(base.clone(), "content_index", json!(0));
                d["text"] = json!(o.buf);
                d["logprobs"] = json!([]);
                self.emit("response.output_text.done", d);
                let d = with(
                    with(base, "content_index", json!(0)),
                    "part",
                    render::text_part(&o.buf),
                );
                self.emit("response.content_part.done", d);
                render::message_item(&o.id, &o.buf, "completed")
            }
            Kind::Reasoning { signature } => {
                self.reasoning_chars += o.buf.chars().count();
                if self.extras.summary {
                    let d = with(
                        with(base.clone(), "summary_index", json!(0)),
                        "text",
                        json!(o.buf),
                    );
                    self.emit("response.reasoning_summary_text.done", d);
                    let d = with(
                        with(base, "summary_index", json!(0)),
                        "part",
                        json!({"type": "summary_text", "text": o.buf}),
                    );
                    self.emit("response.reasoning_summary_part.done", d);
                }
                let sealed = SealedReasoning {
                    t: Some(o.buf.clone()),
                    s: signature,
                    r: None,
                };
                render::reasoning_item(&o.id, &o.buf, &sealed, self.extras.summary)
            }
            Kind::Redacted { data } => {
                let sealed = SealedReasoning {
                    t: None,
                    s: None,
                    r: Some(data),
                };
                render::reasoning_item(&o.id, "", &sealed, false)
            }
            Kind::Call {
                call_id,
                name,
                custom,
            } => {
                let input: Value = if o.buf.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&o.buf).unwrap_or(Value::String(o.buf.clone()))
                };
                if custom {
                    let text = render::custom_input(&input);
                    self.emit(
                        "response.custom_tool_call_input.delta",
                        with(base.clone(), "delta", json!(text)),
                    );
                    self.emit(
                        "response.custom_tool_call_input.done",
                        with(base, "input", json!(text)),
                    );
                } else {
                    let mut d = with(base, "arguments", json!(o.buf));
                    d["name"] = json!(name);
                    self.emit("response.function_call_arguments.done", d);
                }
                render::call_item(&o.id, &call_id, &name, &input, &self.extras, "completed")
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": o.output_index, "item": item}),
        );
        self.done.push((o.output_index, item));
    }

    fn finish(&mut self, cut: bool) {
        while !self.open.is_empty() {
            self.close_item(0);
        }
        self.done.sort_by_key(|(i, _)| *i);
        let usage = self.usage.unwrap_or_else(|| self.meter.usage());
        let (status, incomplete) = render::status_of(if cut {
            None
        } else {
            Some(self.stop.unwrap_or(StopReason::EndTurn))
        });
        let r = self.envelope.object(
            status,
            std::mem::take(&mut self.done)
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            render::usage_json(&usage, self.reasoning_chars),
            incomplete,
            Value::Null,
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(kind, json!({"response": r}));
        self.ended = true;
        self.meter.finish(cut);
    }

    fn fail(&mut self, e: &ApiError) {
        self.emit(
            "error",
            json!({"code": e.code, "message": e.message, "param": e.param}),
        );
        let usage = self.usage.unwrap_or_else(|| self.meter.usage());
        let r = self.envelope.object(
            "failed",
            std::mem::take(&mut self.done)
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            render::usage_json(&usage, self.reasoning_chars),
            Value::Null,
            json!({"code": "server_error", "message": e.message}),
        );
        self.emit("response.failed", json!({"response": r}));
        self.ended = true;
        self.meter.finish(true);
    }

    /// The bytes for one neutral event (`None`: the provider's stream ended).
    pub fn on_event(&mut self, event: Option<Result<Event, ProviderError>>) -> Option<Bytes> {
        if let Some(Ok(e)) = &event {
            self.meter.observe(e);
        }
        match event {
            Some(Ok(Event::BlockStart { index, start })) => self.open_item(index, start),
            Some(Ok(Event::Delta { index, delta })) => self.delta(index, delta),
            Some(Ok(Event::BlockStop { index })) => {
                if let Some(pos) = self.open.iter().position(|o| o.neutral == index) {
                    self.close_item(pos);
                }
            }
            Some(Ok(Event::Stop(s))) => self.stop = Some(s),
            Some(Ok(Event::Usage(u))) => self.usage = Some(u),
            Some(Ok(Event::Cut)) => self.finish(true),
            Some(Err(e)) => self.fail(&ApiError::from(e)),
            None if self.stop.is_none() => self.fail(&ApiError::from(
                crate::handlers::openai::chat::unfinished_stream(),
            )),
            None => self.finish(false),
        }
        self.out.take()
    }
}
