//! `models.yaml`: model aliases clients ask for, and what each one is upstream.

use indexmap::IndexMap;
use rust_decimal::Decimal;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    /// Aliases in the order they are listed to clients; each entry is checked as a
    /// [`ModelSpec`] on its own so that every bad alias is reported, not just the first.
    pub models: IndexMap<String, serde_norway::Value>,
    /// Settings shared by every alias of a provider (an alias's own settings win).
    #[serde(default)]
    pub providers: ProviderDefaults,
    /// Fetching of `http(s)` image URLs for providers that take only inline images.
    #[serde(default)]
    pub image_fetch: ImageFetchSpec,
}

/// `image_fetch:`: whether the gateway fetches `http(s)` image URLs in chat messages for
/// providers that take only inline images (Bedrock). Off by default: such URLs are a 400.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFetchSpec {
    /// Fetch at all (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Refuse `http:` URLs (default true).
    #[serde(default = "yes")]
    pub https_only: bool,
    /// Let fetches reach loopback, private and link-local addresses (default false; for
    /// tests and trusted networks only).
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Largest image in bytes (default 3,750,000: Bedrock's limit per image).
    #[serde(default = "default_image_bytes")]
    pub max_bytes: u64,
    /// Time for the whole fetch in milliseconds (default 10,000).
    #[serde(default = "default_image_timeout")]
    pub timeout_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_image_bytes() -> u64 {
    3_750_000
}

fn default_image_timeout() -> u64 {
    10_000
}

impl Default for ImageFetchSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            https_only: true,
            allow_private_addresses: false,
            max_bytes: default_image_bytes(),
            timeout_ms: default_image_timeout(),
        }
    }
}

/// `providers:`: per-provider defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDefaults {
    /// Defaults for `provider: bedrock` aliases.
    #[serde(default)]
    pub bedrock: Option<UpstreamSettings>,
}

/// How to reach an upstream: the settings an alias and a provider default both accept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// AWS region of the Bedrock call.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL instead of the public regional endpoint (VPC endpoints, tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Longest wait, in milliseconds, for a buffered answer, for a stream to start, and
    /// between two events of a stream.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries of throttled and transient failures.
    #[serde(default)]
    pub retry: Option<RetrySpec>,
}

/// Retries with exponential backoff and jitter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included (1 turns retries off).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Backoff before the first retry, in milliseconds (doubles each retry, with jitter).
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// Longest backoff, in milliseconds.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
}

/// One model alias.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Which provider serves it.
    pub provider: ProviderKind,
    /// The provider's model id (for Bedrock a model id or inference profile id).
    #[serde(default)]
    pub upstream: Option<String>,
    /// AWS region for Bedrock (default: `providers.bedrock.region`, else the process's region).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL (default: `providers.bedrock.endpoint_url`, else the public endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Timeout in milliseconds (see [`UpstreamSettings::timeout_ms`]).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries (see [`RetrySpec`]).
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// For `provider: openai`: the API base URL (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1`, ...); requests go to `<base_url>/chat/completions`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// For `provider: openai`: the environment variable holding the upstream API key (none:
    /// no `Authorization` header).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// For `provider: openai`: forward the client's OpenAI chat body as it came (every field,
    /// with the upstream model id) instead of one rendered from the gateway's neutral request.
    /// Only requests of the OpenAI chat dialect have such a body; others are rendered.
    #[serde(default)]
    pub passthrough: bool,
    /// More names clients may use for this alias (e.g. the model ids Claude Code sends by
    /// default); each names the alias itself in policies, usage and answers.
    #[serde(default)]
    pub names: Vec<String>,
    /// What the model can serve (defaults from the model family).
    #[serde(default)]
    pub capabilities: CapabilitiesSpec,
    /// Anthropic beta flags (`anthropic-beta`) forwarded to Bedrock when a client sends them
    /// (Claude aliases; every other flag is dropped).
    #[serde(default)]
    pub betas: Vec<String>,
    /// Cache points the gateway adds when a request brings none (models with prompt caching).
    #[serde(default)]
    pub cache: CacheSpec,
    /// What the model does.
    #[serde(default)]
    pub kind: ModelKind,
    /// Model groups (Cedar `ModelGroup`s) this alias belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Price in USD per million tokens.
    #[serde(default)]
    pub pricing: Pricing,
    /// Token limits.
    #[serde(default)]
    pub limits: Limits,
    /// Other aliases to try, in order, when this one fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Shown as `owned_by` in the model list.
    #[serde(default)]
    pub owned_by: Option<String>,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
}

/// What a model can serve; each field unset takes the model family's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesSpec {
    /// Tools (function calling).
    #[serde(default)]
    pub tools: Option<bool>,
    /// Forcing a tool (`required` / `any`, or a named tool).
    #[serde(default)]
    pub forced_tool_choice: Option<bool>,
    /// Image input.
    #[serde(default)]
    pub vision: Option<bool>,
    /// Document input (PDF, CSV, DOCX, ...).
    #[serde(default)]
    pub documents: Option<bool>,
    /// How the model is asked to reason.
    #[serde(default)]
    pub reasoning: Option<ReasoningStyle>,
    /// Native structured output (JSON schema).
    #[serde(default)]
    pub structured_output: Option<bool>,
    /// Prompt cache points.
    #[serde(default)]
    pub prompt_caching: Option<bool>,
}

/// How a model is asked to reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningStyle {
    /// It does not reason (reasoning settings are ignored).
    None,
    /// A thinking token budget (Claude's `thinking`).
    Budget,
    /// A named effort (gpt-oss's `reasoning_effort`).
    Effort,
}

/// Cache points added for clients that send none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// After the system prompt.
    #[serde(default)]
    pub system: bool,
    /// After the tool definitions.
    #[serde(default)]
    pub tools: bool,
}

/// Known providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Built-in development model that answers with the prompt; no upstream.
    Echo,
    /// AWS Bedrock Converse / InvokeModel.
    Bedrock,
    /// Any OpenAI-compatible API (OpenAI, vLLM, Ollama, another gateway).
    Openai,
}

impl ProviderKind {
    /// Config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Echo => "echo",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Openai => "openai",
        }
    }
}

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Chat completions.
    #[default]
    Chat,
    /// Embeddings.
    Embedding,
}

impl ModelKind {
    /// Config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Input (prompt) tokens.
    #[serde(default)]
    pub input: Decimal,
    /// Output (completion) tokens.
    #[serde(default)]
    pub output: Decimal,
    /// Prompt-cache reads.
    #[serde(default)]
    pub cache_read: Option<Decimal>,
    /// Prompt-cache writes.
    #[serde(default)]
    pub cache_write: Option<Decimal>,
}

/// Token limits of an alias.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Context window in tokens.
    #[serde(default)]
    pub context_tokens: Option<u32>,
    /// Largest `max_tokens` a request may ask for.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}
