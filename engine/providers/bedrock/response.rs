//! Bedrock Converse answers → provider-neutral answers: the buffered output, and
//! ConverseStream events mapped one by one as they arrive.

use super::convert::from_document;
use super::errors;
use crate::inference::{Block, BlockStart, Delta, Event, EventStream, Response, StopReason, Usage};
use crate::providers::ProviderError;
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConverseOutput as OutputUnion,
    ConverseStreamOutput, ReasoningContentBlock, ReasoningContentBlockDelta,
    StopReason as BedrockStop,
};
use base64::Engine as _;
use futures_util::StreamExt;
use std::collections::VecDeque;

/// Bedrock stop reason → neutral stop reason.
pub fn stop_reason(reason: &BedrockStop) -> StopReason {
    match reason {
        BedrockStop::MaxTokens | BedrockStop::ModelContextWindowExceeded => StopReason::MaxTokens,
        BedrockStop::ToolUse => StopReason::ToolUse,
        BedrockStop::StopSequence => StopReason::StopSequence,
        BedrockStop::ContentFiltered | BedrockStop::GuardrailIntervened => {
            StopReason::ContentFilter
        }
        _ => StopReason::EndTurn,
    }
}

fn count(n: Option<i32>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// Bedrock usage → neutral usage: Bedrock's `inputTokens` leaves out cached tokens, which
/// the neutral `prompt` includes.
pub fn usage(u: &aws_sdk_bedrockruntime::types::TokenUsage) -> Usage {
    let cache_read = count(u.cache_read_input_tokens);
    let cache_write = count(u.cache_write_input_tokens);
    Usage {
        prompt: count(Some(u.input_tokens)) + cache_read + cache_write,
        completion: count(Some(u.output_tokens)),
        cache_read,
        cache_write,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A buffered Converse answer.
pub fn from_converse(out: ConverseOutput) -> Response {
    let mut content = Vec::new();
    if let Some(OutputUnion::Message(message)) = out.output {
        for block in message.content {
            match block {
                ContentBlock::Text(t) => match content.last_mut() {
                    Some(Block::Text { text, .. }) => text.push_str(&t),
                    _ => content.push(Block::text(t)),
                },
                ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) => {
                    content.push(Block::Reasoning {
                        text: r.text,
                        signature: r.signature,
                    });
                }
                ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(b)) => {
                    content.push(Block::RedactedReasoning {
                        data: b64(b.as_ref()),
                    });
                }
                ContentBlock::ToolUse(t) => content.push(Block::ToolUse {
                    id: t.tool_use_id,
                    name: t.name,
                    input: from_document(&t.input),
                }),
                _ => {}
            }
        }
    }
    let mut stop = stop_reason(&out.stop_reason);
    if stop == StopReason::ToolUse && !content.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
        stop = StopReason::EndTurn;
    }
    Response {
        content,
        stop,
        usage: out.usage.as_ref().map(usage).unwrap_or_default(),
    }
}

/// Maps stream events. Converse starts only tool-use blocks explicitly; text and reasoning
/// blocks begin with their first delta, so the mapper starts them itself.
#[derive(Debug, Default)]
pub struct StreamMapper {
    started: Vec<u32>,
    saw_tools: bool,
}

impl StreamMapper {
    fn index(i: i32) -> u32 {
        u32::try_from(i).unwrap_or(0)
    }

    fn start(&mut self, index: u32, start: BlockStart, out: &mut impl Extend<Event>) {
        if !self.started.contains(&index) {
            self.started.push(index);
            out.extend([Event::BlockStart { index, start }]);
        }
    }

    /// The events one Bedrock event becomes (often one, sometimes none or two).
    pub fn map(&mut self, event: ConverseStreamOutput) -> Vec<Event> {
        let mut out = Vec::with_capacity(2);
        self.map_into(event, &mut out);
        out
    }

    /// [`Self::map`], the events appended to `out`.
    pub fn map_into(&mut self, event: ConverseStreamOutput, out: &mut impl Extend<Event>) {
        match event {
            ConverseStreamOutput::ContentBlockStart(e) => {
                if let Some(ContentBlockStart::ToolUse(t)) = e.start {
                    self.saw_tools = true;
                    let start = BlockStart::ToolUse {
                        id: t.tool_use_id,
                        name: t.name,
                    };
                    self.start(Self::index(e.content_block_index), start, out);
                }
            }
            ConverseStreamOutput::ContentBlockDelta(e) => {
                let index = Self::index(e.content_block_index);
                match e.delta {
                    Some(ContentBlockDelta::Text(t)) if !t.is_empty() => {
                        self.start(index, BlockStart::Text, out);
                        out.extend([Event::Delta {
                            index,
                            delta: Delta::Text(t),
                        }]);
                    }
                    Some(ContentBlockDelta::ReasoningContent(r)) => match r {
                        ReasoningContentBlockDelta::Text(t) if !t.is_empty() => {
                            self.start(index, BlockStart::Reasoning, out);
                            out.extend([Event::Delta {
                                index,
                                delta: Delta::Reasoning(t),
                            }]);
                        }
                        ReasoningContentBlockDelta::Signature(sig) => {
                            self.start(index, BlockStart::Reasoning, out);
                            out.extend([Event::Delta {
                                index,
                                delta: Delta::Signature(sig),
                            }]);
                        }
                        ReasoningContentBlockDelta::RedactedContent(b) => {
                            let data = b64(b.as_ref());
                            self.start(index, BlockStart::RedactedReasoning { data }, out);
                        }
                        _ => {}
                    },
                    Some(ContentBlockDelta::ToolUse(t))
                        if !t.input.is_empty() && self.started.contains(&index) =>
                    {
                        out.extend([Event::Delta {
                            index,
                            delta: Delta::ToolInput(t.input),
                        }]);
                    }
                    _ => {}
                }
            }
            ConverseStreamOutput::ContentBlockStop(e) => {
                let index = Self::index(e.content_block_index);
                if self.started.contains(&index) {
                    out.extend([Event::BlockStop { index }]);
                }
            }
            ConverseStreamOutput::MessageStop(e) => {
                let mut stop = stop_reason(&e.stop_reason);
                if stop == StopReason::ToolUse && !self.saw_tools {
                    stop = StopReason::EndTurn;
                }
                out.extend([Event::Stop(stop)]);
            }
            ConverseStreamOutput::Metadata(m) => {
                if let Some(u) = m.usage.as_ref() {
                    out.extend([Event::Usage(usage(u))]);
                }
            }
            _ => {}
        }
    }
}

type Receiver = aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
    ConverseStreamOutput,
    aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError,
>;

struct StreamState {
    receiver: Receiver,
    mapper: StreamMapper,
    pending: VecDeque<Event>,
    done: bool,
    alias: String,
}

/// The events of a ConverseStream answer, each mapped as soon as it is decoded. Dropping the
/// stream drops the receiver and with it the upstream connection.
pub fn event_stream(receiver: Receiver, alias: &str) -> EventStream {
    let state = StreamState {
        receiver,
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
            match s.receiver.recv().await {
                Ok(Some(event)) => s.mapper.map_into(event, &mut s.pending),
                Ok(None) => return None,
                Err(e) => {
                    s.done = true;
                    let err: ProviderError = errors::from_stream_error(&e, &s.alias);
                    return Some((Err(err), s));
                }
            }
        }
    })
    .boxed()
}
