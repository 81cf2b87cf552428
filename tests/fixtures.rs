//! Request fixtures replayed through the engine: `tests/fixtures/*.yaml` → insta snapshots of
//! status, the headers that matter, and the body (volatile fields redacted).

mod common;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// What the fixture shows.
    description: String,
    request: FixtureRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureRequest {
    method: String,
    path: String,
    /// Test principal whose key is sent (`admin`, `dev`, `user`, `nogroup`, `expired`, `disabled`).
    #[serde(default, rename = "as")]
    principal: Option<String>,
    /// `authorization` (default) or `x-api-key`.
    #[serde(default)]
    key_header: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// JSON body.
    #[serde(default)]
    body: Option<Value>,
    /// Exact body text.
    #[serde(default)]
    raw_body: Option<String>,
    /// A body of this many bytes (a JSON string padded with spaces).
    #[serde(default)]
    body_size: Option<usize>,
}

/// The headers worth snapshotting.
const HEADERS: &[&str] = &[
    "content-type",
    "allow",
    "www-authenticate",
    "retry-after",
    "cache-control",
];

/// Replaces `{{key:NAME}}`, `{{key_id:NAME}}` with the test principal's values.
fn substitute(text: &str, dir: &common::TestDirectory) -> String {
    let mut out = text.to_string();
    for (name, _) in common::PRINCIPALS {
        out = out
            .replace(&format!("{{{{key:{name}}}}}"), dir.key(name))
            .replace(&format!("{{{{key_id:{name}}}}}"), &dir.key_ids[*name]);
    }
    out
}

/// Replaces the test principals' key ids and user ids in a body with stable names.
fn stabilize(text: &str, dir: &common::TestDirectory) -> String {
    let mut out = text.to_string();
    for (name, _) in common::PRINCIPALS {
        out = out
            .replace(&dir.key_ids[*name], &format!("[key-id:{name}]"))
            .replace(&dir.user_ids[*name], &format!("[user-id:{name}]"));
    }
    out
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), &*v) {
                    ("created" | "created_at", Value::Number(_)) => {
                        *v = Value::String("[timestamp]".into())
                    }
                    ("expires_at", Value::Number(_)) => *v = Value::String("[expiry]".into()),
                    ("last4", Value::String(_)) => *v = Value::String("[last4]".into()),
                    ("key", Value::String(s)) if s.starts_with("pw-") => {
                        *v = Value::String("[new-key]".into())
                    }
                    ("id", Value::String(s))
                        if pennyworth::auth::api_key::owner_of_id(s).is_some() =>
                    {
                        *v = Value::String("[new-key-id]".into())
                    }
                    ("id", Value::String(s)) if s.len() == 36 && s.matches('-').count() == 4 => {
                        *v = Value::String("[new-user-id]".into())
                    }
                    ("id", Value::String(s))
                        if s.starts_with("chatcmpl-") || s.starts_with("cmpl-") =>
                    {
                        *v = Value::String("[completion-id]".into())
                    }
                    ("key_id", Value::String(_)) => *v = Value::String("[key-id]".into()),
                    ("commit", Value::String(s)) => {
                        assert!(
                            s == "unknown"
                                || (s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())),
                            "commit is a git sha or `unknown`: {s}"
                        );
                        *v = Value::String("[commit]".into());
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn body_value(content_type: &str, body: &Bytes, dir: &common::TestDirectory) -> Value {
    let body = &Bytes::from(stabilize(&String::from_utf8_lossy(body), dir));
    if content_type.starts_with("text/event-stream") {
        let text = std::str::from_utf8(body).expect("SSE is UTF-8");
        assert!(
            text.ends_with("\n\n"),
            "SSE body must end with a blank line: {text:?}"
        );
        let events: Vec<Value> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not an SSE data line: {e:?}"));
                if data == "[DONE]" {
                    Value::String("[DONE]".into())
                } else {
                    let mut v: Value = serde_json::from_str(data).expect("SSE data is JSON");
                    redact(&mut v);
                    v
                }
            })
            .collect();
        Value::Array(events)
    } else if body.is_empty() {
        Value::Null
    } else {
        let mut v: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
        redact(&mut v);
        v
    }
}

#[tokio::test]
async fn fixtures() {
    let mut count = 0;
    let mut paths: Vec<_> = std::fs::read_dir(common::repo_root().join("tests/fixtures"))
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        count += 1;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let fixture: Fixture =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // A fresh store per fixture: fixtures that create, revoke or delete do not leak.
        let (engine, dir) = common::engine(&common::repo_root()).await;
        let r = &fixture.request;
        let path = substitute(&r.path, &dir);
        let mut builder = http::Request::builder()
            .method(r.method.as_str())
            .uri(path.as_str());
        if let Some(p) = &r.principal {
            let key = dir.key(p);
            builder = match r.key_header.as_deref() {
                None | Some("authorization") => {
                    builder.header("authorization", format!("Bearer {key}"))
                }
                Some(h) => builder.header(h, key),
            };
        }
        for (k, v) in &r.headers {
            builder = builder.header(k.as_str(), substitute(v, &dir));
        }
        let body = match (&r.body, &r.raw_body, r.body_size) {
            (Some(v), None, None) => Bytes::from(substitute(&v.to_string(), &dir)),
            (None, Some(s), None) => Bytes::from(s.clone()),
            (None, None, Some(n)) => {
                let mut s = String::with_capacity(n);
                s.push('"');
                s.extend(std::iter::repeat_n(' ', n.saturating_sub(2)));
                s.push('"');
                Bytes::from(s)
            }
            (None, None, None) => Bytes::new(),
            _ => panic!("{name}: give at most one of body, raw_body, body_size"),
        };
        let request = builder.body(body).expect("request");
        let (status, headers, body) = common::send(&engine, request).await;
        assert!(
            headers.contains_key("x-request-id"),
            "{name}: every response has x-request-id"
        );
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if status.as_u16() >= 400 {
            // Every error has the OpenAI shape.
            let v: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("{name}: error body is not JSON"));
            let err = v
                .get("error")
                .unwrap_or_else(|| panic!("{name}: no `error` object"));
            for field in ["message", "type", "code", "param"] {
                assert!(err.get(field).is_some(), "{name}: error lacks `{field}`");
            }
        }
        let shown: BTreeMap<&str, String> = HEADERS
            .iter()
            .filter_map(|h| {
                headers
                    .get(*h)
                    .map(|v| (*h, v.to_str().unwrap_or("<binary>").to_string()))
            })
            .collect();
        let snapshot = serde_json::json!({
            "status": status.as_u16(),
            "headers": shown,
            "body": body_value(&content_type, &body, &dir),
        });
        insta::with_settings!({
            description => fixture.description.clone(),
            snapshot_path => "fixtures/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_yaml_snapshot!(name, snapshot);
        });
    }
    assert!(count >= 30, "expected at least 30 fixtures, found {count}");
}
