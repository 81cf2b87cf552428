//! The Converse wire format: request bodies serialized with serde exactly as the AWS SDK's
//! serializers write them (camelCase names, absent members left out, blobs as base64,
//! documents as plain JSON), and the parts of answers and stream events the gateway reads,
//! deserialized into typed structs (unknown members and union variants ignored).

use base64::Engine as _;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// Bytes written as standard base64, like the SDK's `Blob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

/// An empty structure (`{}`), e.g. `{"auto": {}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Empty {}

/// A Converse (and ConverseStream) request body, the model id aside (it goes in the path).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseBody {
    /// Model-specific fields (Claude `thinking`, gpt-oss `reasoning_effort`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
    /// Sampling and limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    /// Conversation, strictly alternating user and assistant.
    pub messages: Vec<Message>,
    /// Structured output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// System prompt blocks (left out when empty, as the provider has always sent them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemBlock>,
    /// Tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
}

/// The CountTokens body of a Converse request: `{"input": {"converse": {...}}}` (no
/// inference or output configuration).
#[derive(Debug, Serialize)]
pub struct CountTokensBody<'a> {
    /// The input union.
    pub input: CountTokensInput<'a>,
}

/// The `converse` member of the CountTokens input.
#[derive(Debug, Serialize)]
pub struct CountTokensInput<'a> {
    /// The request to count.
    pub converse: CountTokensConverse<'a>,
}

/// What CountTokens counts of a Converse request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensConverse<'a> {
    /// As in [`ConverseBody`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<&'a Value>,
    /// As in [`ConverseBody`].
    pub messages: &'a [Message],
    /// As in [`ConverseBody`].
    #[serde(skip_serializing_if = "<[SystemBlock]>::is_empty")]
    pub system: &'a [SystemBlock],
    /// As in [`ConverseBody`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<&'a ToolConfig>,
}

/// `inferenceConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    /// Output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i32>,
    /// Temperature, as the `f32` the API takes, written as its `f64` value (as the SDK does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling, like `temperature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

/// A conversation role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Its role.
    pub role: Role,
    /// Its blocks.
    pub content: Vec<ContentBlock>,
}

/// A system prompt block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemBlock {
    /// Text.
    Text(String),
    /// A cache point.
    CachePoint(CachePoint),
}

/// A message content block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    /// Text.
    Text(String),
    /// An image.
    Image(ImageBlock),
    /// A document.
    Document(DocumentBlock),
    /// A tool call.
    ToolUse(ToolUseBlock),
    /// A tool result.
    ToolResult(ToolResultBlock),
    /// A cache point.
    CachePoint(CachePoint),
    /// Earlier reasoning.
    ReasoningContent(ReasoningBlock),
}

/// `cachePoint`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachePoint {
    /// Always `default`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `1h`, or absent for the default five minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<&'static str>,
}

/// `{"bytes": "<base64>"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BytesSource {
    /// The bytes.
    pub bytes: Blob,
}

/// An image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageBlock {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: &'static str,
    /// Its bytes.
    pub source: BytesSource,
}

/// A document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentBlock {
    /// `pdf`, `csv`, ...
    pub format: &'static str,
    /// Its name.
    pub name: String,
    /// Its bytes.
    pub source: BytesSource,
}

/// A tool call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    /// Call id.
    pub tool_use_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments.
    pub input: Value,
}

/// A tool result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    /// The call answered.
    pub tool_use_id: String,
    /// Its content.
    pub content: Vec<ToolResultContent>,
    /// `error` when the tool failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

/// Tool result content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent {
    /// Text.
    Text(String),
    /// An image.
    Image(ImageBlock),
    /// A document.
    Document(DocumentBlock),
}

/// Earlier reasoning.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningBlock {
    /// Reasoning text and its signature.
    ReasoningText(ReasoningText),
    /// Redacted reasoning.
    RedactedContent(Blob),
}

/// `reasoningText`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasoningText {
    /// The text.
    pub text: String,
    /// Its signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `toolConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    /// Tool definitions and cache points.
    pub tools: Vec<Tool>,
    /// How the model may use them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// A tool definition or a cache point.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    /// A definition.
    ToolSpec(ToolSpec),
    /// A cache point.
    CachePoint(CachePoint),
}

/// `toolSpec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `{"json": <schema>}`.
    pub input_schema: JsonSchema,
    /// Strict schema adherence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `{"json": <schema>}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSchema {
    /// The schema.
    pub json: Value,
}

/// `toolChoice`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    /// The model decides.
    Auto(Empty),
    /// Some tool must be called.
    Any(Empty),
    /// This tool must be called.
    Tool(NamedTool),
}

/// `{"name": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedTool {
    /// The tool's name.
    pub name: String,
}

/// `outputConfig` for a JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputConfig {
    /// The answer's format.
    pub text_format: OutputFormat,
}

/// `textFormat`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFormat {
    /// Always `json_schema`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The schema.
    pub structure: OutputStructure,
}

/// `structure`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputStructure {
    /// The schema definition.
    pub json_schema: JsonSchemaDefinition,
}

/// `jsonSchema`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSchemaDefinition {
    /// The schema as JSON text.
    pub schema: String,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

// ---- answers ----

/// A Converse answer (the members the gateway reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseOutput {
    /// The output union; only `message` is read.
    #[serde(default)]
    pub output: Option<OutputUnion>,
    /// Why the model stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// `output`.
#[derive(Debug, Deserialize)]
pub struct OutputUnion {
    /// The answer message.
    #[serde(default)]
    pub message: Option<OutputMessage>,
}

/// The answer message.
#[derive(Debug, Deserialize)]
pub struct OutputMessage {
    /// Its blocks.
    #[serde(default)]
    pub content: Vec<OutputBlock>,
}

/// An answer block: one of the members is set (others, e.g. citations, are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputBlock {
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// A tool call.
    #[serde(default)]
    pub tool_use: Option<OutputToolUse>,
    /// Reasoning.
    #[serde(default)]
    pub reasoning_content: Option<OutputReasoning>,
}

/// A tool call of the answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputToolUse {
    /// Call id.
    pub tool_use_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments.
    #[serde(default)]
    pub input: Value,
}

/// Reasoning of the answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputReasoning {
    /// Reasoning text.
    #[serde(default)]
    pub reasoning_text: Option<OutputReasoningText>,
    /// Redacted reasoning, base64.
    #[serde(default)]
    pub redacted_content: Option<String>,
}

/// Reasoning text of the answer.
#[derive(Debug, Deserialize)]
pub struct OutputReasoningText {
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Its signature.
    #[serde(default)]
    pub signature: Option<String>,
}

/// `usage`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Input tokens, cached ones excluded.
    #[serde(default)]
    pub input_tokens: i64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<i64>,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_input_tokens: Option<i64>,
}

/// A CountTokens answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensOutput {
    /// Input tokens.
    pub input_tokens: i64,
}

/// An error body: `message` (or `Message`), and the error code when no
/// `x-amzn-errortype` header names it (`__type` or `code`).
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    /// Message.
    #[serde(default, alias = "Message", alias = "errorMessage")]
    pub message: Option<String>,
    /// Error type, possibly with a namespace (`ns#Name`).
    #[serde(default, rename = "__type")]
    pub kind: Option<String>,
    /// Error code.
    #[serde(default)]
    pub code: Option<String>,
}

// ---- stream events ----

/// `contentBlockStart`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStartEvent {
    /// Block index.
    #[serde(default)]
    pub content_block_index: i64,
    /// What starts.
    #[serde(default)]
    pub start: Option<BlockStartUnion>,
}

/// `start`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStartUnion {
    /// A tool call.
    #[serde(default)]
    pub tool_use: Option<StartToolUse>,
}

/// A tool call's start.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartToolUse {
    /// Call id.
    pub tool_use_id: String,
    /// Tool name.
    pub name: String,
}

/// `contentBlockDelta`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeltaEvent {
    /// Block index.
    #[serde(default)]
    pub content_block_index: i64,
    /// The delta.
    #[serde(default)]
    pub delta: Option<DeltaUnion>,
}

/// `delta`: one member is set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaUnion {
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// Tool input JSON text.
    #[serde(default)]
    pub tool_use: Option<ToolUseDelta>,
    /// Reasoning.
    #[serde(default)]
    pub reasoning_content: Option<ReasoningDelta>,
}

/// A tool input delta.
#[derive(Debug, Deserialize)]
pub struct ToolUseDelta {
    /// JSON text.
    #[serde(default)]
    pub input: String,
}

/// A reasoning delta: one member is set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta {
    /// Reasoning text.
    #[serde(default)]
    pub text: Option<String>,
    /// The signature.
    #[serde(default)]
    pub signature: Option<String>,
    /// Redacted reasoning, base64.
    #[serde(default)]
    pub redacted_content: Option<String>,
}

/// `contentBlockStop`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStopEvent {
    /// Block index.
    #[serde(default)]
    pub content_block_index: i64,
}

/// `messageStop`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStopEvent {
    /// Why the model stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// `metadata`.
#[derive(Debug, Deserialize)]
pub struct MetadataEvent {
    /// Token counts.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}
