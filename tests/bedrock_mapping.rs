//! Golden tests of the OpenAI ↔ Converse and Anthropic Messages ↔ Converse mappings: each
//! `tests/fixtures/requests/<case>.json` (a request of its `dialect` and the Bedrock answer to
//! script) is sent through the engine to the Bedrock test server. Two snapshots per case, in `tests/fixtures/requests/snapshots/`:
//! `<case>.converse` is the Converse request as the SDK put it on the wire (path and JSON
//! body), `<case>.response` is the OpenAI response or chunks the gateway returned.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use bedrock_server::{Item, Reply};
use harness::{Harness, sse_events};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// `openai` (default: `/v1/chat/completions`), `anthropic` (`/v1/messages`) or
    /// `responses` (`/v1/responses`).
    #[serde(default)]
    dialect: Option<String>,
    description: String,
    request: Value,
    /// Converse answer (buffered cases).
    #[serde(default)]
    reply: Option<Value>,
    /// ConverseStream events as `[event-type, payload]` (streamed cases).
    #[serde(default)]
    events: Option<Vec<(String, Value)>>,
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), &*v) {
                    ("created", Value::Number(_)) => *v = Value::String("[timestamp]".into()),
                    ("id", Value::String(s)) if s.starts_with("chatcmpl-") => {
                        *v = Value::String("[completion-id]".into())
                    }
                    ("id" | "item_id", Value::String(s)) if s.starts_with("msg_") => {
                        *v = Value::String("[message-id]".into())
                    }
                    ("created_at", Value::Number(_)) => *v = Value::String("[timestamp]".into()),
                    ("id" | "item_id", Value::String(s))
                        if ["resp_", "rs_", "fc_", "ctc_"]
                            .iter()
                            .any(|p| s.starts_with(p)) =>
                    {
                        *v = Value::String(format!("[{}-id]", s.split('_').next().unwrap_or("")))
                    }
                    ("encrypted_content", Value::String(_)) => {
                        *v = Value::String("[sealed]".into())
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Object keys sorted: JSON documents (tool schemas, tool inputs) go over the wire in hash
/// order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// An Anthropic SSE body as `[{"event": name, "data": json}]`.
fn anthropic_events(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .expect("UTF-8")
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("event and data lines");
            serde_json::json!({
                "event": name.strip_prefix("event: ").expect("event line"),
                "data": serde_json::from_str::<Value>(data.strip_prefix("data: ").expect("data line"))
                    .expect("JSON data"),
            })
        })
        .collect()
}

#[tokio::test]
async fn converse_mapping_golden() {
    let h = Harness::start().await;
    let dir = common::repo_root().join("tests/fixtures/requests");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("requests dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 40,
        "expected the request cases of both dialects"
    );
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let case: Case = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        h.server.clear();
        let reply = match (case.reply, case.events) {
            (Some(r), None) => Reply::Converse(r),
            (None, Some(ev)) => Reply::Stream(
                ev.into_iter()
                    .map(|(kind, payload)| Item::Event(kind, payload))
                    .collect(),
            ),
            _ => panic!("{name}: give exactly one of `reply` and `events`"),
        };
        h.server.script("*", [reply]);
        let anthropic = case.dialect.as_deref() == Some("anthropic");
        let responses = case.dialect.as_deref() == Some("responses");
        let (status, headers, body) = if responses {
            let req = common::request(
                "POST",
                "/v1/responses",
                Some(h.dir.key("user")),
                case.request.to_string(),
            );
            common::send(&h.engine, req).await
        } else if anthropic {
            let req = common::request(
                "POST",
                "/v1/messages",
                Some(h.dir.key("user")),
                case.request.to_string(),
            );
            common::send(&h.engine, req).await
        } else {
            h.chat(case.request).await
        };
        let recorded = h.server.recorded();
        assert_eq!(recorded.len(), 1, "{name}: one upstream call");
        let r = &recorded[0];
        assert!(
            r.authorization().starts_with("AWS4-HMAC-SHA256 "),
            "{name}: signed"
        );
        let converse = serde_json::json!({"path": r.path, "body": sorted(&r.body)});
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut response =
            if content_type.starts_with("text/event-stream") && (anthropic || responses) {
                Value::Array(anthropic_events(&body))
            } else if content_type.starts_with("text/event-stream") {
                Value::Array(sse_events(&body))
            } else {
                serde_json::from_slice(&body).expect("JSON body")
            };
        redact(&mut response);
        let mut response = serde_json::json!({"status": status.as_u16(), "body": response});
        if let Some(omitted) = headers.get("x-pennyworth-omitted-tools") {
            response["omitted_tools"] = Value::String(omitted.to_str().unwrap_or("").into());
        }
        insta::with_settings!({
            description => case.description.clone(),
            snapshot_path => "fixtures/requests/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_yaml_snapshot!(format!("{name}.converse"), converse);
            insta::assert_yaml_snapshot!(format!("{name}.response"), response);
        });
    }
}
