//! Bedrock Converse answers → provider-neutral answers: the buffered output, and
//! ConverseStream events mapped one by one as they arrive (`stream.rs` decodes them).

use super::convert::sorted_keys;
use super::wire::{
    BlockDeltaEvent, BlockStartEvent, BlockStopEvent, ConverseOutput, MessageStopEvent,
    MetadataEvent, TokenUsage,
};
use crate::inference::{Block, BlockStart, Delta, Event, Response, StopReason, Usage};

/// Bedrock stop reason → neutral stop reason (unknown ones, and none, end the turn).
pub fn stop_reason(reason: Option<&str>) -> StopReason {
    match reason.unwrap_or_default() {
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "tool_use" => StopReason::ToolUse,
        "stop_sequence" => StopReason::StopSequence,
        "content_filtered" | "guardrail_intervened" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// Bedrock usage → neutral usage: Bedrock's `inputTokens` leaves out cached tokens, which
/// the neutral `prompt` includes.
pub fn usage(u: &TokenUsage) -> Usage {
    let cache_read = count(u.cache_read_input_tokens);
    let cache_write = count(u.cache_write_input_tokens);
    Usage {
        prompt: count(Some(u.input_tokens)) + cache_read + cache_write,
        completion: count(Some(u.output_tokens)),
        cache_read,
        cache_write,
    }
}

/// A buffered Converse answer.
pub fn from_converse(out: ConverseOutput) -> Response {
    let mut content = Vec::new();
    let blocks = out
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .unwrap_or_default();
    for block in blocks {
        if let Some(t) = block.text {
            match content.last_mut() {
                Some(Block::Text { text, .. }) => text.push_str(&t),
                _ => content.push(Block::text(t)),
            }
        } else if let Some(t) = block.tool_use {
            content.push(Block::ToolUse {
                id: t.tool_use_id,
                name: t.name,
                input: sorted_keys(t.input),
            });
        } else if let Some(r) = block.reasoning_content {
            if let Some(r) = r.reasoning_text {
                content.push(Block::Reasoning {
                    text: r.text,
                    signature: r.signature,
                });
            } else if let Some(data) = r.redacted_content {
                content.push(Block::RedactedReasoning { data });
            }
        }
    }
    let mut stop = stop_reason(out.stop_reason.as_deref());
    if stop == StopReason::ToolUse && !content.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
        stop = StopReason::EndTurn;
    }
    Response {
        content,
        stop,
        usage: out.usage.as_ref().map(usage).unwrap_or_default(),
    }
}

/// One decoded ConverseStream event (the ones the gateway reads).
#[derive(Debug)]
pub enum StreamEvent {
    /// `contentBlockStart`.
    BlockStart(BlockStartEvent),
    /// `contentBlockDelta`.
    BlockDelta(BlockDeltaEvent),
    /// `contentBlockStop`.
    BlockStop(BlockStopEvent),
    /// `messageStop`.
    MessageStop(MessageStopEvent),
    /// `metadata`.
    Metadata(MetadataEvent),
}

/// Maps stream events. Converse starts only tool-use blocks explicitly; text and reasoning
/// blocks begin with their first delta, so the mapper starts them itself.
#[derive(Debug, Default)]
pub struct StreamMapper {
    started: Vec<u32>,
    saw_tools: bool,
}

impl StreamMapper {
    fn index(i: i64) -> u32 {
        u32::try_from(i).unwrap_or(0)
    }

    fn start(&mut self, index: u32, start: BlockStart, out: &mut impl Extend<Event>) {
        if !self.started.contains(&index) {
            self.started.push(index);
            out.extend([Event::BlockStart { index, start }]);
        }
    }

    /// The events one Bedrock event becomes (often one, sometimes none or two).
    pub fn map(&mut self, event: StreamEvent) -> Vec<Event> {
        let mut out = Vec::with_capacity(2);
        self.map_into(event, &mut out);
        out
    }

    /// [`Self::map`], the events appended to `out`.
    pub fn map_into(&mut self, event: StreamEvent, out: &mut impl Extend<Event>) {
        match event {
            StreamEvent::BlockStart(e) => {
                if let Some(t) = e.start.and_then(|s| s.tool_use) {
                    self.saw_tools = true;
                    let start = BlockStart::ToolUse {
                        id: t.tool_use_id,
                        name: t.name,
                    };
                    self.start(Self::index(e.content_block_index), start, out);
                }
            }
            StreamEvent::BlockDelta(e) => {
                let index = Self::index(e.content_block_index);
                let Some(delta) = e.delta else { return };
                if let Some(t) = delta.text {
                    if !t.is_empty() {
                        self.start(index, BlockStart::Text, out);
                        out.extend([Event::Delta {
                            index,
                            delta: Delta::Text(t),
                        }]);
                    }
                } else if let Some(r) = delta.reasoning_content {
                    if let Some(t) = r.text {
                        if !t.is_empty() {
                            self.start(index, BlockStart::Reasoning, out);
                            out.extend([Event::Delta {
                                index,
                                delta: Delta::Reasoning(t),
                            }]);
                        }
                    } else if let Some(sig) = r.signature {
                        self.start(index, BlockStart::Reasoning, out);
                        out.extend([Event::Delta {
                            index,
                            delta: Delta::Signature(sig),
                        }]);
                    } else if let Some(data) = r.redacted_content {
                        self.start(index, BlockStart::RedactedReasoning { data }, out);
                    }
                } else if let Some(t) = delta.tool_use
                    && !t.input.is_empty()
                    && self.started.contains(&index)
                {
                    out.extend([Event::Delta {
                        index,
                        delta: Delta::ToolInput(t.input),
                    }]);
                }
            }
            StreamEvent::BlockStop(e) => {
                let index = Self::index(e.content_block_index);
                if self.started.contains(&index) {
                    out.extend([Event::BlockStop { index }]);
                }
            }
            StreamEvent::MessageStop(e) => {
                let mut stop = stop_reason(e.stop_reason.as_deref());
                if stop == StopReason::ToolUse && !self.saw_tools {
                    stop = StopReason::EndTurn;
                }
                out.extend([Event::Stop(stop)]);
            }
            StreamEvent::Metadata(m) => {
                if let Some(u) = m.usage.as_ref() {
                    out.extend([Event::Usage(usage(u))]);
                }
            }
        }
    }
}
