//! Bedrock Converse answers → provider-neutral answers: the buffered output, and
//! ConverseStream events mapped one by one as they arrive.

use super::convert::from_document;
use super::errors;
use crate::providers::{
    ChatEvent, ChatOutput, ChatStream, FinishReason, ProviderError, TokenUsage, ToolCall,
};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConverseOutput as OutputUnion,
    ConverseStreamOutput, ReasoningContentBlock, ReasoningContentBlockDelta, StopReason,
};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};

/// Stop reason → finish reason.
pub fn finish_reason(reason: &StopReason) -> FinishReason {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

fn count(n: Option<i32>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// Bedrock usage → OpenAI's meaning: Bedrock's `inputTokens` leaves out cached tokens, which
/// OpenAI's `prompt_tokens` includes.
pub fn usage(u: &aws_sdk_bedrockruntime::types::TokenUsage) -> TokenUsage {
    let cache_read = count(u.cache_read_input_tokens);
    let cache_write = count(u.cache_write_input_tokens);
    TokenUsage {
        prompt: count(Some(u.input_tokens)) + cache_read + cache_write,
        completion: count(Some(u.output_tokens)),
        cache_read,
        cache_write,
    }
}

/// A buffered Converse answer.
pub fn from_converse(out: ConverseOutput) -> ChatOutput {
    let mut content: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    if let Some(OutputUnion::Message(message)) = out.output {
        for block in message.content {
            match block {
                ContentBlock::Text(t) => content.get_or_insert_with(String::new).push_str(&t),
                ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) => {
                    reasoning.get_or_insert_with(String::new).push_str(&r.text);
                }
                ContentBlock::ToolUse(t) => tool_calls.push(ToolCall {
                    id: t.tool_use_id,
                    name: t.name,
                    arguments: from_document(&t.input).to_string(),
                }),
                _ => {}
            }
        }
    }
    let mut finish = finish_reason(&out.stop_reason);
    if finish == FinishReason::ToolCalls && tool_calls.is_empty() {
        finish = FinishReason::Stop;
    }
    ChatOutput {
        content,
        reasoning,
        tool_calls,
        finish,
        usage: out.usage.as_ref().map(usage).unwrap_or_default(),
    }
}

/// Maps stream events; remembers which content block is which tool call so argument deltas
/// carry the tool call's stable index.
#[derive(Debug, Default)]
pub struct StreamMapper {
    tools: HashMap<i32, u32>,
    next_tool: u32,
}

impl StreamMapper {
    /// The events one Bedrock event becomes (often one, sometimes none).
    pub fn map(&mut self, event: ConverseStreamOutput) -> Vec<ChatEvent> {
        match event {
            ConverseStreamOutput::ContentBlockStart(e) => match e.start {
                Some(ContentBlockStart::ToolUse(t)) => {
                    let index = self.next_tool;
                    self.next_tool += 1;
                    self.tools.insert(e.content_block_index, index);
                    vec![ChatEvent::ToolCallStart {
                        index,
                        id: t.tool_use_id,
                        name: t.name,
                    }]
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::ContentBlockDelta(e) => match e.delta {
                Some(ContentBlockDelta::Text(t)) if !t.is_empty() => vec![ChatEvent::Text(t)],
                Some(ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(t)))
                    if !t.is_empty() =>
                {
                    vec![ChatEvent::Reasoning(t)]
                }
                Some(ContentBlockDelta::ToolUse(t)) => match self.tools.get(&e.content_block_index)
                {
                    Some(index) if !t.input.is_empty() => vec![ChatEvent::ToolCallArguments {
                        index: *index,
                        arguments: t.input,
                    }],
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            },
            ConverseStreamOutput::MessageStop(e) => {
                let mut finish = finish_reason(&e.stop_reason);
                if finish == FinishReason::ToolCalls && self.next_tool == 0 {
                    finish = FinishReason::Stop;
                }
                vec![ChatEvent::Finish(finish)]
            }
            ConverseStreamOutput::Metadata(m) => match m.usage.as_ref() {
                Some(u) => vec![ChatEvent::Usage(usage(u))],
                None => Vec::new(),
            },
            _ => Vec::new(),
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
    pending: VecDeque<ChatEvent>,
    done: bool,
    alias: String,
}

/// The events of a ConverseStream answer, each mapped as soon as it is decoded. Dropping the
/// stream drops the receiver and with it the upstream connection.
pub fn event_stream(receiver: Receiver, alias: &str) -> ChatStream {
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
                Ok(Some(event)) => s.pending.extend(s.mapper.map(event)),
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
