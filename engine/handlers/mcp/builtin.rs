//! The built-in tools: `list_models`, `whoami`, `chat` and `embed`, in `ToolServer::"builtin"`.
//! The model lists in their schemas hold only the models the caller may invoke, and every
//! call authorizes its model again, as `/v1/chat/completions` and `/v1/embeddings` do.

use super::Ctx;
use super::jsonrpc::{INVALID_PARAMS, RpcError};
use crate::auth::Identity;
use crate::config::models::ModelKind;
use crate::engine::ModelRuntime;
use crate::errors::ApiError;
use crate::handlers::openai::embeddings::EmbeddingRequest;
use crate::handlers::openai::fallback;
use crate::handlers::openai::types::ChatRequest;
use crate::providers::TokenUsage;
use crate::usage::UsageRecord;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// Names of the built-in tools, in listing order.
pub const NAMES: &[&str] = &["list_models", "whoami", "chat", "embed", "get_usage"];

fn permitted<'e>(ctx: &Ctx<'e>, identity: &Identity, kind: ModelKind) -> Vec<&'e ModelRuntime> {
    ctx.engine
        .models()
        .filter(|m| m.kind == kind && ctx.engine.may_invoke(identity, m, ctx.facts))
        .collect()
}

/// The definition of a built-in tool for this caller, or `None` when it has nothing to offer
/// them (`chat` without a chat model they may use, `embed` without an embedding model).
pub fn definition(ctx: &Ctx<'_>, identity: &Identity, name: &str) -> Option<Value> {
    let no_args = json!({"type": "object", "properties": {}, "additionalProperties": false});
    Some(match name {
        "list_models" => json!({
            "name": "list_models",
            "title": "List models",
            "description": "Lists the model aliases of this gateway that you may use, with their kind (chat or embedding).",
            "inputSchema": no_args,
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        }),
        "get_usage" => json!({
            "name": "get_usage",
            "title": "My usage",
            "description": "Your own usage and cost on this gateway between two UTC days (default: this month so far), in total and by day, model or key.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "from": {"type": "string", "description": "first day, YYYY-MM-DD"},
                    "to": {"type": "string", "description": "last day, YYYY-MM-DD"},
                    "group_by": {"type": "string", "enum": ["day", "model", "key"]},
                },
                "additionalProperties": false,
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        }),
        "whoami" => json!({
            "name": "whoami",
            "title": "Who am I",
            "description": "Shows the user, groups and authentication method the gateway sees for this connection.",
            "inputSchema": no_args,
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        }),
        "chat" => {
            let models: Vec<&str> = permitted(ctx, identity, ModelKind::Chat)
                .iter()
                .map(|m| m.alias.as_str())
                .collect();
            if models.is_empty() {
                return None;
            }
            json!({
                "name": "chat",
                "title": "Ask a model",
                "description": "Sends a prompt (or a short conversation) to one model of this gateway and returns its answer and token usage.",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string", "enum": models, "description": "model alias"},
                        "prompt": {"type": "string", "description": "the user message (after `messages`, if both are given)"},
                        "messages": {
                            "type": "array",
                            "description": "earlier turns of the conversation",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                                    "content": {"type": "string"},
                                },
                                "required": ["role", "content"],
                            },
                        },
                        "system": {"type": "string", "description": "system prompt"},
                        "max_tokens": {"type": "integer", "minimum": 1},
                        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    },
                    "required": ["model"],
                },
                "annotations": {"readOnlyHint": true, "openWorldHint": true},
            })
        }
        "embed" => {
            let models: Vec<&str> = permitted(ctx, identity, ModelKind::Embedding)
                .iter()
                .map(|m| m.alias.as_str())
                .collect();
            if models.is_empty() {
                return None;
            }
            json!({
                "name": "embed",
                "title": "Embed texts",
                "description": "Returns one embedding vector per input text from an embedding model of this gateway.",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string", "enum": models, "description": "embedding model alias"},
                        "input": {
                            "anyOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            ],
                        },
                    },
                    "required": ["model", "input"],
                },
                "annotations": {"readOnlyHint": true, "openWorldHint": true},
            })
        }
        _ => return None,
    })
}

/// A tool result: the JSON as text, and as structured content.
fn structured(v: Value) -> Value {
    json!({
        "content": [{"type": "text", "text": v.to_string()}],
        "structuredContent": v,
        "isError": false,
    })
}

/// A tool-level failure the model can read and correct.
pub fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// Runs a built-in tool. `Ok` holds the tool result (possibly `isError`).
pub async fn call(
    ctx: &Ctx<'_>,
    identity: &Identity,
    name: &str,
    args: &Map<String, Value>,
) -> Result<Value, RpcError> {
    match name {
        "list_models" => {
            let models: Vec<Value> = ctx
                .engine
                .models()
                .filter(|m| ctx.engine.may_invoke(identity, m, ctx.facts))
                .map(|m| json!({"id": m.alias, "kind": m.kind.as_str(), "owned_by": m.owned_by}))
                .collect();
            Ok(structured(json!({"models": models})))
        }
        "whoami" => Ok(structured(json!({
            "user": identity.username,
            "groups": identity.groups,
            "auth": identity.method.as_str(),
            "key_id": identity.key_id,
        }))),
        "get_usage" => Ok(get_usage(ctx, identity, args).await),
        "chat" => Ok(chat(ctx, identity, args).await),
        "embed" => Ok(embed(ctx, identity, args).await),
        _ => Err(RpcError::new(
            INVALID_PARAMS,
            format!("unknown tool `{name}`"),
        )),
    }
}

/// The caller's own usage from the ledger (the `GET /v1/usage` report of their account).
async fn get_usage(ctx: &Ctx<'_>, identity: &Identity, args: &Map<String, Value>) -> Value {
    use crate::usage::{period, report};
    let day = |k: &str| -> Result<Option<i64>, String> {
        match args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => period::parse_day(s)
                .map(Some)
                .ok_or_else(|| format!("`{k}` is not a date (YYYY-MM-DD)")),
            Some(_) => Err(format!("`{k}` must be a string (YYYY-MM-DD)")),
        }
    };
    let (from, to) = match (day("from"), day("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return tool_error(&e),
    };
    let by = match args
        .get("group_by")
        .and_then(Value::as_str)
        .unwrap_or("day")
    {
        b @ ("day" | "model" | "key") => report::GroupBy::parse(b),
        _ => None,
    };
    let Some(by) = by else {
        return tool_error("`group_by` must be `day`, `model` or `key`");
    };
    let to = to.unwrap_or_else(crate::directory::now);
    let from = from.unwrap_or_else(|| period::parse_day(&period::month_start(to)).unwrap_or(to));
    if from > to {
        return tool_error("`from` is after `to`");
    }
    if (to - from) / period::DAY >= crate::handlers::admin::usage::MAX_DAYS {
        return tool_error("a report covers at most a year");
    }
    let query = crate::usage::store::Query {
        from: period::day(from),
        to: period::day(to),
        user: Some(identity.username.clone()),
    };
    match ctx.engine.ledger().query(&query).await {
        Ok(rows) => match report::to_json(&rows, by, &query.from, &query.to, query.user.as_deref())
        {
            Ok(v) => structured(v),
            Err(e) => tool_error(&format!("the usage report could not be built: {e}")),
        },
        Err(e) => {
            tracing::error!(target: "pennyworth::usage", error = %e, "usage query failed");
            tool_error("the usage ledger is unavailable; retry shortly")
        }
    }
}

/// The model `args.model` names, when it exists, is of `kind` and the caller may invoke it.
fn model<'e>(
    ctx: &Ctx<'e>,
    identity: &Identity,
    args: &Map<String, Value>,
    kind: ModelKind,
) -> Result<&'e ModelRuntime, String> {
    let alias = args
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| "`model` is required and must be a string".to_string())?;
    match ctx.engine.model(alias) {
        Some(m) if m.kind == kind && ctx.engine.may_invoke(identity, m, ctx.facts) => Ok(m),
        _ => Err(format!(
            "the {} model `{alias}` does not exist or you may not use it; `list_models` shows yours",
            kind.as_str()
        )),
    }
}

fn api_message(e: ApiError) -> String {
    match e.param {
        Some(p) => format!("{} (`{p}`)", e.message),
        None => e.message,
    }
}

/// The chat request the tool's arguments describe.
fn chat_request(args: &Map<String, Value>) -> Result<ChatRequest, String> {
    let mut messages = Vec::new();
    if let Some(s) = args.get("system") {
        messages.push(json!({"role": "system", "content": s}));
    }
    match args.get("messages") {
        None | Some(Value::Null) => {}
        Some(Value::Array(m)) => messages.extend(m.iter().cloned()),
        Some(_) => return Err("`messages` must be an array".into()),
    }
    if let Some(p) = args.get("prompt") {
        messages.push(json!({"role": "user", "content": p}));
    }
    if messages.is_empty() {
        return Err("give a `prompt` or `messages`".into());
    }
    let mut body = json!({"model": args.get("model"), "messages": messages});
    for k in ["max_tokens", "temperature"] {
        if let (Some(v), Value::Object(b)) = (args.get(k), &mut body) {
            b.insert(k.into(), v.clone());
        }
    }
    ChatRequest::parse(&Bytes::from(body.to_string())).map_err(api_message)
}

/// The one place the `chat` tool reaches a model: the neutral inference core, with the chat
/// path's timeout and fallbacks.
async fn run_chat<'e>(
    ctx: &Ctx<'e>,
    model: &'e ModelRuntime,
    request: &ChatRequest,
) -> Result<(&'e ModelRuntime, crate::inference::Response), ApiError> {
    let core = request.to_core()?;
    Ok(fallback::chat(ctx, model, &core).await?)
}

async fn chat(ctx: &Ctx<'_>, identity: &Identity, args: &Map<String, Value>) -> Value {
    let m = match model(ctx, identity, args, ModelKind::Chat) {
        Ok(m) => m,
        Err(e) => return tool_error(&e),
    };
    let request = match chat_request(args) {
        Ok(r) => r,
        Err(e) => return tool_error(&e),
    };
    if let (Some(max), Some(asked)) = (m.max_output_tokens, request.output_limit())
        && asked > max
    {
        return tool_error(&format!(
            "`max_tokens` is {asked}, but model `{}` allows at most {max}",
            m.alias
        ));
    }
    match run_chat(ctx, m, &request).await {
        Ok((served, out)) => {
            UsageRecord::complete(ctx.ids(), identity, served, false, out.usage)
                .emit(ctx.engine.ledger());
            let text = out.text().unwrap_or_default();
            json!({
                "content": [{"type": "text", "text": text}],
                "structuredContent": {
                    "model": served.alias,
                    "text": text,
                    "finish_reason": crate::handlers::openai::chat::FinishReason::from(out.stop).as_str(),
                    "usage": usage(out.usage),
                },
                "isError": false,
            })
        }
        Err(e) => tool_error(&api_message(e)),
    }
}

fn usage(u: TokenUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
    })
}

async fn embed(ctx: &Ctx<'_>, identity: &Identity, args: &Map<String, Value>) -> Value {
    let m = match model(ctx, identity, args, ModelKind::Embedding) {
        Ok(m) => m,
        Err(e) => return tool_error(&e),
    };
    let body = json!({"model": m.alias, "input": args.get("input")});
    let request = match EmbeddingRequest::parse(body.to_string().as_bytes()) {
        Ok(r) => r,
        Err(e) => return tool_error(&api_message(e)),
    };
    match fallback::embed(ctx, m, &request.to_core()).await {
        Ok((served, out)) => {
            let u = TokenUsage {
                prompt: out.prompt_tokens,
                ..TokenUsage::default()
            };
            UsageRecord::complete(ctx.ids(), identity, served, false, u).emit(ctx.engine.ledger());
            structured(json!({
                "model": served.alias,
                "embeddings": out.vectors,
                "usage": usage(u),
            }))
        }
        Err(e) => tool_error(&ApiError::from(e).message),
    }
}
