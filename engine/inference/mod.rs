//! The neutral inference model: what every dialect (OpenAI chat and legacy completions,
//! Anthropic Messages, ...) converts a request into, and what every provider (Bedrock, any
//! OpenAI-compatible upstream, `echo`) converts out of. Answers come back in the same
//! vocabulary: a buffered [`Response`] or a stream of [`Event`]s.
//!
//! The vocabulary follows content blocks (text, image, document, tool use, tool result,
//! reasoning with its signature, redacted reasoning), so nothing one dialect can say is lost
//! on the way to a provider that understands it. See `doc/architecture.md`.

pub mod capabilities;
pub mod stream;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde_json::Value;

pub use crate::providers::ProviderError;

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The user (tool results are user content).
    User,
    /// The model.
    Assistant,
}

/// How long a cache point keeps its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTtl {
    /// The provider's default (5 minutes on Bedrock).
    Default,
    /// One hour, where the model offers it.
    OneHour,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Inline bytes with their media type (`image/png`).
    Bytes {
        /// Media type.
        media_type: String,
        /// The image.
        data: Bytes,
    },
    /// A URL as the client sent it (`data:` or `http(s):`); providers decode or fetch it.
    Url(String),
}

/// Document formats Bedrock reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// PDF.
    Pdf,
    /// CSV.
    Csv,
    /// Word.
    Docx,
    /// Legacy Word.
    Doc,
    /// Excel.
    Xlsx,
    /// Legacy Excel.
    Xls,
    /// HTML.
    Html,
    /// Plain text.
    Txt,
    /// Markdown.
    Md,
}

impl DocumentFormat {
    /// The format of a media type (`application/pdf`, `text/plain`, ...).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        Some(match media_type.to_ascii_lowercase().as_str() {
            "application/pdf" => Self::Pdf,
            "text/csv" => Self::Csv,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Self::Docx,
            "application/msword" => Self::Doc,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Self::Xlsx,
            "application/vnd.ms-excel" => Self::Xls,
            "text/html" => Self::Html,
            "text/plain" => Self::Txt,
            "text/markdown" => Self::Md,
            _ => return None,
        })
    }
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// A cache point after this block.
        cache: Option<CacheTtl>,
    },
    /// An image.
    Image {
        /// Where it comes from.
        source: ImageSource,
        /// The request parameter that holds it, for error messages.
        param: String,
    },
    /// A document (PDF, CSV, ...).
    Document {
        /// Format.
        format: DocumentFormat,
        /// A name (Bedrock wants one; the dialect's title or file name, else `document`).
        name: String,
        /// The document.
        data: Bytes,
    },
    /// A tool call of the model.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        input: Value,
    },
    /// The result of a tool call (user content).
    ToolResult {
        /// The call answered.
        id: String,
        /// Text, image or document blocks.
        content: Vec<Block>,
        /// The tool failed.
        is_error: bool,
    },
    /// The model's reasoning, with the signature that lets it be sent back.
    Reasoning {
        /// The reasoning text.
        text: String,
        /// Provider signature (Claude on Bedrock).
        signature: Option<String>,
    },
    /// Reasoning the provider returned encrypted; sent back unchanged (base64 as received).
    RedactedReasoning {
        /// The opaque data, base64.
        data: String,
    },
}

impl Block {
    /// A text block without a cache point.
    pub fn text(text: impl Into<String>) -> Self {
        Block::Text {
            text: text.into(),
            cache: None,
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Content blocks, in order.
    pub content: Vec<Block>,
}

impl Message {
    /// The text of the message's text blocks and tool results, joined by newlines.
    pub fn text(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for b in &self.content {
            match b {
                Block::Text { text, .. } => parts.push(text),
                Block::ToolResult { content, .. } => {
                    for c in content {
                        if let Block::Text { text, .. } = c {
                            parts.push(text);
                        }
                    }
                }
                _ => {}
            }
        }
        parts.join("\n")
    }

    /// True when the message carries tool results (a user turn that answers tool calls).
    pub fn has_tool_results(&self) -> bool {
        self.content
            .iter()
            .any(|b| matches!(b, Block::ToolResult { .. }))
    }
}

/// A system prompt block.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemBlock {
    /// Text.
    pub text: String,
    /// A cache point after this block.
    pub cache: Option<CacheTtl>,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// JSON schema of the input.
    pub schema: Value,
    /// Strict schema adherence asked for.
    pub strict: bool,
    /// A cache point after this tool (and the ones before it).
    pub cache: Option<CacheTtl>,
}

/// Which tool the model must or may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// Some tool must be called.
    Any,
    /// No tool may be called.
    None,
    /// This tool must be called.
    Tool(String),
}

/// The form of the answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// Some JSON object.
    JsonObject,
    /// JSON valid against a schema.
    JsonSchema {
        /// Schema name.
        name: Option<String>,
        /// Description.
        description: Option<String>,
        /// The schema.
        schema: Value,
    },
}

/// How much the model thinks before answering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reasoning {
    /// A named effort (`minimal`, `low`, `medium`, `high`, `max`, `none`).
    pub effort: Option<String>,
    /// An exact thinking budget in tokens (wins over `effort` where both apply).
    pub budget: Option<u32>,
    /// The model decides how much to think (Claude's adaptive thinking).
    pub adaptive: bool,
    /// Where the request came from, for error messages (`thinking.budget_tokens`).
    pub param: &'static str,
}

/// Sampling and limits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    /// Temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Output token limit.
    pub max_tokens: Option<u32>,
    /// The parameter that set `max_tokens`, for error messages.
    pub max_tokens_param: &'static str,
}

/// Who and what the request is for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// The end user the client names (`user`, `metadata.user_id`).
    pub end_user: Option<String>,
    /// The client's session (Claude Code's session id).
    pub session_id: Option<String>,
}

/// A request a client body from the OpenAI chat dialect may be forwarded as, unchanged
/// (`passthrough` aliases of OpenAI-compatible upstreams); `Debug` shows only its length.
#[derive(Clone)]
pub struct RawBody(pub Bytes);

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBody({} bytes)", self.0.len())
    }
}

/// One model call, in the neutral vocabulary.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// System prompt blocks.
    pub system: Vec<SystemBlock>,
    /// Conversation.
    pub messages: Vec<Message>,
    /// Tools.
    pub tools: Vec<ToolDef>,
    /// Tool choice (`None`: the provider's default).
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools at once.
    pub parallel_tool_calls: Option<bool>,
    /// Answer format.
    pub output: OutputFormat,
    /// Reasoning settings.
    pub reasoning: Option<Reasoning>,
    /// Sampling and limits.
    pub sampling: Sampling,
    /// End user and session.
    pub metadata: Metadata,
    /// Streamed answer wanted.
    pub stream: bool,
    /// Anthropic beta flags the client sent (forwarded where the alias allows them).
    pub betas: Vec<String>,
    /// The client's OpenAI chat body, for aliases that forward it unchanged.
    pub raw_openai: Option<RawBody>,
}

impl Request {
    /// Characters of prompt text (system and messages), for estimates.
    pub fn prompt_chars(&self) -> usize {
        self.system
            .iter()
            .map(|s| s.text.chars().count())
            .sum::<usize>()
            + self
                .messages
                .iter()
                .map(|m| m.text().chars().count())
                .sum::<usize>()
    }

    /// True when the conversation holds tool calls or results.
    pub fn has_tool_history(&self) -> bool {
        self.messages.iter().any(|m| {
            m.content
                .iter()
                .any(|b| matches!(b, Block::ToolUse { .. } | Block::ToolResult { .. }))
        })
    }
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model finished.
    EndTurn,
    /// A stop sequence.
    StopSequence,
    /// The output token limit.
    MaxTokens,
    /// The model called tools.
    ToolUse,
    /// Filtered (content filter or guardrail).
    ContentFilter,
}

/// Token counts of one call. `input` counts every prompt token, cached ones included;
/// `cache_read` and `cache_write` are the parts of it served from or written to a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens (cached included).
    pub prompt: u64,
    /// Output tokens (reasoning included).
    pub completion: u64,
    /// Prompt tokens read from the cache.
    pub cache_read: u64,
    /// Prompt tokens written to the cache.
    pub cache_write: u64,
}

impl Usage {
    /// Prompt tokens neither read from nor written to a cache (Anthropic's `input_tokens`).
    pub fn uncached_input(&self) -> u64 {
        self.prompt
            .saturating_sub(self.cache_read)
            .saturating_sub(self.cache_write)
    }
}

/// The JSON text of a tool call's input; an input that is a string (an upstream's arguments
/// that were not a JSON object) is its own text.
pub fn input_text(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Content blocks in order: reasoning, text and tool uses.
    pub content: Vec<Block>,
    /// Why it ended.
    pub stop: StopReason,
    /// Tokens.
    pub usage: Usage,
}

impl Response {
    /// The text blocks joined (`None` when there are none).
    pub fn text(&self) -> Option<String> {
        let mut out: Option<String> = None;
        for b in &self.content {
            if let Block::Text { text, .. } = b {
                out.get_or_insert_with(String::new).push_str(text);
            }
        }
        out
    }

    /// The reasoning text joined (`None` when there is none).
    pub fn reasoning(&self) -> Option<String> {
        let mut out: Option<String> = None;
        for b in &self.content {
            if let Block::Reasoning { text, .. } = b {
                out.get_or_insert_with(String::new).push_str(text);
            }
        }
        out
    }
}

/// What kind of block a streamed block is.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockStart {
    /// Text follows.
    Text,
    /// Reasoning text (and then its signature) follows.
    Reasoning,
    /// Redacted reasoning, complete in this event.
    RedactedReasoning {
        /// The opaque data, base64.
        data: String,
    },
    /// A tool call; its input JSON text follows.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
}

/// A piece of a streamed block.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// More text.
    Text(String),
    /// More reasoning text.
    Reasoning(String),
    /// The reasoning block's signature.
    Signature(String),
    /// More of the tool call's input JSON text.
    ToolInput(String),
}

/// One event of a streamed answer. Block indexes count the answer's blocks from 0; every
/// block is started before its deltas and stopped after them.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A block begins.
    BlockStart {
        /// Block index.
        index: u32,
        /// Its kind.
        start: BlockStart,
    },
    /// More of a block.
    Delta {
        /// Block index.
        index: u32,
        /// The piece.
        delta: Delta,
    },
    /// A block ended.
    BlockStop {
        /// Block index.
        index: u32,
    },
    /// The answer ended.
    Stop(StopReason),
    /// Final token counts.
    Usage(Usage),
    /// The gateway cut the answer short (its own time limit is near); nothing follows.
    Cut,
}

/// A stream of events.
pub type EventStream = BoxStream<'static, Result<Event, ProviderError>>;

/// An embeddings call.
#[derive(Debug, Clone, Default)]
pub struct EmbedRequest {
    /// Texts, in order.
    pub inputs: Vec<String>,
    /// Output dimensions asked for.
    pub dimensions: Option<u32>,
    /// End user.
    pub user: Option<String>,
    /// Cohere's input type.
    pub input_type: Option<String>,
}
