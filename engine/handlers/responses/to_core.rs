//! `input` items, tools and settings of a Responses request → the neutral request.

use super::seal;
use super::types::{CUSTOM_ARG, Extras, ResponsesRequest, SealedReasoning, bad};
use crate::errors::ApiError;
use crate::inference::{
    self as inf, Block, CacheTtl, DocumentFormat, ImageSource, Message, OutputFormat, Reasoning,
    Request, Role, Sampling, SystemBlock, ToolDef,
};
use base64::Engine as _;
use serde_json::{Value, json};

fn str_field<'a>(item: &'a Value, key: &str, param: &str) -> Result<&'a str, ApiError> {
    match item.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(
            format!("{param}.{key}"),
            format!("`{param}.{key}` must be a string"),
        )),
        None => Err(ApiError::bad_request(
            "missing_required_parameter",
            format!("missing required parameter: `{param}.{key}`"),
        )
        .with_param(format!("{param}.{key}"))),
    }
}

/// Decodes a `data:<media>;base64,<data>` URL into its media type and bytes.
fn data_url(url: &str) -> Option<(String, bytes::Bytes)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    Some((media.to_string(), bytes::Bytes::from(bytes)))
}

fn format_of_name(name: &str) -> Option<DocumentFormat> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "pdf" => DocumentFormat::Pdf,
        "csv" => DocumentFormat::Csv,
        "docx" => DocumentFormat::Docx,
        "doc" => DocumentFormat::Doc,
        "xlsx" => DocumentFormat::Xlsx,
        "xls" => DocumentFormat::Xls,
        "html" | "htm" => DocumentFormat::Html,
        "txt" => DocumentFormat::Txt,
        "md" => DocumentFormat::Md,
        _ => return None,
    })
}

/// One content part of a message or tool output.
fn part(p: &Value, param: &str) -> Result<Option<Block>, ApiError> {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(Some(match kind {
        "input_text" | "output_text" | "text" => Block::text(str_field(p, "text", param)?),
        "refusal" => Block::text(str_field(p, "refusal", param)?),
        "input_image" => match p.get("image_url").and_then(Value::as_str) {
            Some(url) => Block::Image {
                source: ImageSource::Url(url.to_string()),
                param: format!("{param}.image_url"),
            },
            None => {
                return Err(bad(
                    format!("{param}.image_url"),
                    format!(
                        "`{param}`: this gateway has no Files API; send the image as `image_url` (a data URL or an http(s) URL)"
                    ),
                ));
            }
        },
        "input_file" => {
            let Some(data) = p.get("file_data").and_then(Value::as_str) else {
                return Err(bad(
                    format!("{param}.file_data"),
                    format!(
                        "`{param}`: this gateway has no Files API and fetches no files; send the file inline as `file_data`"
                    ),
                ));
            };
            let filename = p.get("filename").and_then(Value::as_str);
            let (format, bytes) = match data_url(data) {
                Some((media, bytes)) => (DocumentFormat::from_media_type(&media), bytes),
                None => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .map_err(|_| {
                            bad(
                                format!("{param}.file_data"),
                                format!(
                                    "`{param}.file_data` is neither a base64 data URL nor base64"
                                ),
                            )
                        })?;
                    (filename.and_then(format_of_name), bytes::Bytes::from(bytes))
                }
            };
            let format = format.or_else(|| filename.and_then(format_of_name)).ok_or_else(|| {
                bad(
                    format!("{param}.file_data"),
                    format!("`{param}` is not a supported document type (PDF, CSV, DOC, DOCX, XLS, XLSX, HTML, TXT, MD)"),
                )
            })?;
            Block::Document {
                format,
                name: filename
                    .map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem))
                    .filter(|n| !n.is_empty())
                    .unwrap_or("document")
                    .to_string(),
                data: bytes,
            }
        }
        other => {
            return Err(bad(
                format!("{param}.type"),
                format!("`{param}.type` `{other}` is not a content part this gateway reads"),
            ));
        }
    }))
}

fn parts(content: &Value, param: &str) -> Result<Vec<Block>, ApiError> {
    match content {
        Value::String(s) => Ok(vec![Block::text(s.clone())]),
        Value::Array(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (k, p) in list.iter().enumerate() {
                out.extend(part(p, &format!("{param}[{k}]"))?);
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(bad(
            param,
            format!("`{param}` must be a string or a list of content parts"),
        )),
    }
}

/// Item types the gateway never produces (hosted tools' calls): skipped in history.
const HOSTED_ITEMS: &[&str] = &[
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "computer_call",
    "computer_call_output",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "tool_search_call",
    "tool_search_output",
    "local_shell_call",
    "local_shell_call_output",
];

fn push(out: &mut Request, role: Role, block: Block) {
    if let Some(last) = out.messages.last_mut()
        && last.role == role
    {
        last.content.push(block);
        return;
    }
    out.messages.push(Message {
        role,
        content: vec![block],
    });
}

impl ResponsesRequest {
    fn tools_to_core(&self, out: &mut Request, extras: &mut Extras) -> Result<(), ApiError> {
        for (i, t) in self.tools.iter().flatten().enumerate() {
            let param = format!("tools[{i}]");
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
            match kind {
                "function" => {
                    let name = str_field(t, "name", &param)?;
                    out.tools.push(ToolDef {
                        name: name.to_string(),
                        description: t
                            .get("description")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        schema: match t.get("parameters") {
                            Some(p) if p.is_object() => p.clone(),
                            _ => json!({"type": "object", "properties": {}}),
                        },
                        strict: t.get("strict").and_then(Value::as_bool).unwrap_or(false),
                        cache: None,
                    });
                }
                "custom" => {
                    let name = str_field(t, "name", &param)?;
                    let mut description = t
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let format = t.get("format");
                    if let Some(def) = format
                        .filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar"))
                        .and_then(|f| f.get("definition"))
                        .and_then(Value::as_str)
                    {
                        let syntax = format
                            .and_then(|f| f.get("syntax"))
                            .and_then(Value::as_str)
                            .unwrap_or("lark");
                        description.push_str(&format!(
                            "\n\nThe `{CUSTOM_ARG}` argument is free text that must match this {syntax} grammar:\n{def}"
                        ));
                    }
                    out.tools.push(ToolDef {
                        name: name.to_string(),
                        description: Some(description.trim().to_string()).filter(|d| !d.is_empty()),
                        schema: json!({
                            "type": "object",
                            "properties": {CUSTOM_ARG: {"type": "string", "description": "The tool's free-form input text."}},
                            "required": [CUSTOM_ARG],
                        }),
                        strict: false,
                        cache: None,
                    });
                    extras.custom_tools.push(name.to_string());
                }
                other => {
                    if !extras.omitted_tools.iter().any(|o| o == other) {
                        extras.omitted_tools.push(other.to_string());
                    }
                }
            }
        }
        out.tool_choice = match &self.tool_choice {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Some(inf::ToolChoice::Auto),
                "none" => Some(inf::ToolChoice::None),
                "required" => Some(inf::ToolChoice::Any),
                other => {
                    return Err(bad(
                        "tool_choice",
                        format!(
                            "`tool_choice` must be `auto`, `none`, `required` or an object, got `{other}`"
                        ),
                    ));
                }
            },
            Some(obj) => match obj.get("type").and_then(Value::as_str) {
                Some("function" | "custom") => {
                    let name = str_field(obj, "name", "tool_choice")?;
                    if !out.tools.iter().any(|t| t.name == name) {
                        return Err(bad(
                            "tool_choice.name",
                            format!(
                                "`tool_choice.name` `{name}` is not one of the request's tools"
                            ),
                        ));
                    }
                    Some(inf::ToolChoice::Tool(name.to_string()))
                }
                Some("allowed_tools") => {
                    let allowed: Vec<&str> = obj
                        .get("tools")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.get("name").and_then(Value::as_str))
                        .collect();
                    out.tools.retain(|t| allowed.contains(&t.name.as_str()));
                    match obj.get("mode").and_then(Value::as_str) {
                        Some("required") => Some(inf::ToolChoice::Any),
                        _ => Some(inf::ToolChoice::Auto),
                    }
                }
                // A hosted tool named as the choice: it is left out, so the model decides.
                _ => Some(inf::ToolChoice::Auto),
            },
        };
        Ok(())
    }

    fn item_to_core(
        &self,
        item: &Value,
        param: &str,
        out: &mut Request,
        extras: &mut Extras,
    ) -> Result<(), ApiError> {
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(k) => k,
            None if item.get("role").is_some() => "message",
            None => {
                return Err(bad(
                    format!("{param}.type"),
                    format!("`{param}` has no `type`"),
                ));
            }
        };
        match kind {
            "message" => {
                let role = str_field(item, "role", param)?;
                let content = parts(
                    item.get("content").unwrap_or(&Value::Null),
                    &format!("{param}.content"),
                )?;
                match role {
                    "system" | "developer" if out.messages.is_empty() => {
                        for b in content {
                            if let Block::Text { text, .. } = b {
                                out.system.push(SystemBlock { text, cache: None });
                            }
                        }
                    }
                    "system" | "developer" => {
                        // Later instructions stay where they are, as user content the model
                        // reads as an instruction.
                        for b in content {
                            if let Block::Text { text, .. } = b {
                                push(
                                    out,
                                    Role::User,
                                    Block::text(format!("<{role}>{text}</{role}>")),
                                );
                            }
                        }
                    }
                    "user" => content.into_iter().for_each(|b| push(out, Role::User, b)),
                    "assistant" => content
                        .into_iter()
                        .filter(|b| matches!(b, Block::Text { .. }))
                        .for_each(|b| push(out, Role::Assistant, b)),
                    other => {
                        return Err(bad(
                            format!("{param}.role"),
                            format!(
                                "`{param}.role` must be `user`, `assistant`, `system` or `developer`, got `{other}`"
                            ),
                        ));
                    }
                }
            }
            "function_call" | "custom_tool_call" => {
                let call_id = str_field(item, "call_id", param)?;
                let name = str_field(item, "name", param)?;
                let input = if kind == "custom_tool_call" {
                    json!({CUSTOM_ARG: str_field(item, "input", param)?})
                } else {
                    let args = str_field(item, "arguments", param)?.trim();
                    if args.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(args).map_err(|_| {
                            bad(
                                format!("{param}.arguments"),
                                format!("`{param}.arguments` is not valid JSON"),
                            )
                        })?
                    }
                };
                push(
                    out,
                    Role::Assistant,
                    Block::ToolUse {
                        id: call_id.to_string(),
                        name: name.to_string(),
                        input,
                    },
                );
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id = str_field(item, "call_id", param)?;
                let content = parts(
                    item.get("output").unwrap_or(&Value::Null),
                    &format!("{param}.output"),
                )?;
                push(
                    out,
                    Role::User,
                    Block::ToolResult {
                        id: call_id.to_string(),
                        content,
                        is_error: false,
                    },
                );
            }
            "reasoning" => {
                let opened = item
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .and_then(seal::open)
                    .and_then(|b| serde_json::from_slice::<SealedReasoning>(&b).ok());
                match opened {
                    Some(SealedReasoning { r: Some(data), .. }) => {
                        push(out, Role::Assistant, Block::RedactedReasoning { data });
                    }
                    Some(SealedReasoning { t, s, .. }) => push(
                        out,
                        Role::Assistant,
                        Block::Reasoning {
                            text: t.unwrap_or_default(),
                            signature: s,
                        },
                    ),
                    None => extras.dropped_reasoning += 1,
                }
            }
            "item_reference" => {
                return Err(ApiError::bad_request(
                    "stateless",
                    format!("`{param}`: this gateway keeps no stored items; send the item itself"),
                )
                .with_param(param.to_string()));
            }
            k if HOSTED_ITEMS.contains(&k) => {}
            other => {
                return Err(bad(
                    format!("{param}.type"),
                    format!("`{param}.type` `{other}` is not an input item this gateway reads"),
                ));
            }
        }
        Ok(())
    }

    /// The request in the neutral vocabulary, and what the answer needs besides.
    pub fn to_core(&self) -> Result<(Request, Extras), ApiError> {
        let mut out = Request {
            stream: self.is_stream(),
            ..Request::default()
        };
        let mut extras = Extras {
            summary: self.summary().is_some(),
            ..Extras::default()
        };
        if let Some(i) = self.instructions.as_ref().filter(|i| !i.is_empty()) {
            out.system.push(SystemBlock {
                text: i.clone(),
                cache: None,
            });
        }
        match &self.input {
            Some(Value::String(s)) => push(&mut out, Role::User, Block::text(s.clone())),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.item_to_core(item, &format!("input[{i}]"), &mut out, &mut extras)?;
                }
            }
            _ => {}
        }
        if out.messages.is_empty() {
            return Err(bad("input", "`input` holds no user or assistant content"));
        }
        self.tools_to_core(&mut out, &mut extras)?;
        out.parallel_tool_calls = self.parallel_tool_calls;
        let text = self.text.as_ref();
        out.output = match text.and_then(|t| t.format.as_ref()) {
            Some(f) if f.kind == "json_object" => OutputFormat::JsonObject,
            Some(f) if f.kind == "json_schema" => OutputFormat::JsonSchema {
                name: f.name.clone(),
                description: f.description.clone(),
                schema: f.schema.clone().unwrap_or(Value::Null),
            },
            Some(f) if f.kind != "text" => {
                return Err(bad(
                    "text.format.type",
                    format!(
                        "`text.format.type` must be `text`, `json_object` or `json_schema`, got `{}`",
                        f.kind
                    ),
                ));
            }
            _ => OutputFormat::Text,
        };
        match text.and_then(|t| t.verbosity.as_deref()) {
            Some("low") => out.system.push(SystemBlock {
                text: "Keep answers brief.".into(),
                cache: None,
            }),
            Some("high") => out.system.push(SystemBlock {
                text: "Give thorough, detailed answers.".into(),
                cache: None,
            }),
            _ => {}
        }
        out.reasoning = self
            .reasoning
            .as_ref()
            .and_then(|r| r.effort.clone())
            .filter(|e| e != "none")
            .map(|effort| Reasoning {
                effort: Some(effort),
                param: "reasoning.effort",
                ..Reasoning::default()
            });
        out.sampling = Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: None,
            stop: Vec::new(),
            max_tokens: self.max_output_tokens,
            max_tokens_param: "max_output_tokens",
        };
        out.metadata.end_user = self.safety_identifier.clone().or_else(|| self.user.clone());
        if let Some(key) = &self.prompt_cache_key {
            out.metadata.session_id = Some(key.chars().take(128).collect());
            // Cache points after the system prompt, the tools and the conversation so far;
            // the provider drops them for models that do not cache.
            if let Some(last) = out.system.last_mut() {
                last.cache = Some(CacheTtl::Default);
            }
            if let Some(last) = out.tools.last_mut() {
                last.cache = Some(CacheTtl::Default);
            }
            if let Some(last) = out.messages.last_mut() {
                last.content.push(Block::Text {
                    text: String::new(),
                    cache: Some(CacheTtl::Default),
                });
            }
        }
        Ok((out, extras))
    }
}
