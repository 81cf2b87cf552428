//! The OpenAI Responses API end to end: the engine, the neutral inference core, the real
//! Bedrock client and the Bedrock test server (which enforces Bedrock's request rules).
//! What reaches Converse is checked field by field; answers and streams against the
//! Responses shapes, including a reasoning round trip through sealed `encrypted_content`.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;
#[path = "support/harness.rs"]
mod harness;

use bedrock_server::Reply;
use bytes::Bytes;
use harness::Harness;
use serde_json::{Value, json};

async fn post(h: &Harness, path: &str, body: &Value) -> (u16, http::HeaderMap, Bytes) {
    let req = common::request(
        "POST",
        path,
        Some(h.dir.key("user")),
        Bytes::from(body.to_string()),
    );
    let (status, headers, bytes) = common::send(&h.engine, req).await;
    (status.as_u16(), headers, bytes)
}

/// `(event name, data)` of a Responses SSE body; checks names match `type` and sequence
/// numbers count from 0.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let out: Vec<(String, Value)> = std::str::from_utf8(body)
        .expect("UTF-8")
        .split("\n\n")
        .filter(|e| !e.is_empty() && !e.starts_with(':'))
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("event and data lines");
            let name = name
                .strip_prefix("event: ")
                .expect("event line")
                .to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").expect("data line"))
                .expect("JSON");
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect();
    for (i, (_, d)) in out.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64, "sequence numbers in order");
    }
    out
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

#[tokio::test]
async fn buffered_text_maps_instructions_tools_and_answers_in_responses_shape() {
    let h = Harness::start().await;
    h.server.script("*", [Reply::text("Bonjour.")]);
    let body = json!({
        "model": "claude",
        "instructions": "Be kind.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Speak French."}]},
            {"role": "user", "content": "Hello"},
        ],
        "tools": [weather_tool(), {"type": "web_search"}, {"type": "tool_search"},
            {"type": "custom", "name": "apply_patch", "description": "Patch files",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: \"*** Begin Patch\""}}],
        "tool_choice": "auto",
        "max_output_tokens": 500,
        "temperature": 0.5,
        "store": true,
        "metadata": {"k": "v"},
        "client_metadata": {"x": "y"},
        "include": ["reasoning.encrypted_content"],
    });
    let (status, headers, bytes) = post(&h, "/v1/responses", &body).await;
    let v: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        headers["x-pennyworth-omitted-tools"],
        "web_search, tool_search"
    );
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["store"], false);
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["role"], "assistant");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "Bonjour.");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["input_tokens_details"]["cached_tokens"].is_u64());
    assert!(v["usage"]["output_tokens_details"]["reasoning_tokens"].is_u64());

    let rec = h.server.recorded();
    assert_eq!(rec.len(), 1);
    let c = &rec[0].body;
    assert_eq!(c["system"][0]["text"], "Be kind.");
    assert_eq!(c["system"][1]["text"], "Speak French.");
    assert_eq!(c["messages"][0]["content"][0]["text"], "Hello");
    assert_eq!(c["inferenceConfig"]["maxTokens"], 500);
    let tools = c["toolConfig"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 2, "hosted tools left out: {tools:?}");
    let patch = &tools[1]["toolSpec"];
    assert_eq!(patch["name"], "apply_patch");
    assert_eq!(
        patch["inputSchema"]["json"]["properties"]["input"]["type"],
        "string"
    );
    assert!(
        patch["description"]
            .as_str()
            .unwrap()
            .contains("*** Begin Patch")
    );
}

#[tokio::test]
async fn stateful_requests_get_a_400_saying_the_gateway_keeps_no_state() {
    let h = Harness::start().await;
    for extra in [
        json!({"previous_response_id": "resp_1"}),
        json!({"conversation": "conv_1"}),
    ] {
        let mut body = json!({"model": "claude", "input": "hi"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, _, bytes) = post(&h, "/v1/responses", &body).await;
        let v: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(status, 400);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no conversation state"),
            "{v}"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (status, _, bytes) = post(
        &h,
        "/v1/responses",
        &json!({"model": "claude", "input": [{"type": "item_reference", "id": "msg_1"}]}),
    )
    .await;
    assert_eq!(status, 400, "{bytes:?}");
    let (status, _, _) = post(
        &h,
        "/v1/responses",
        &json!({"model": "nope", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(h.server.recorded().is_empty(), "nothing reached Bedrock");
}

#[tokio::test]
async fn streamed_thinking_and_tool_call_round_trip_through_sealed_reasoning() {
    let h = Harness::start().await;
    h.server
        .prefer_tool("get_weather", json!({"city": "Paris"}));
    let body = json!({
        "model": "claude", "stream": true, "store": false,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}],
        "tools": [weather_tool()],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    });
    let (status, headers, bytes) = post(&h, "/v1/responses", &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let ev = events(&bytes);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    let output = done["output"].as_array().expect("output");
    let reasoning = &output[0];
    assert_eq!(reasoning["type"], "reasoning");
    assert_eq!(reasoning["summary"][0]["text"], "I will run the command.");
    let sealed = reasoning["encrypted_content"].as_str().expect("sealed");
    assert!(!sealed.contains("test-signature"));
    let call = &output[1];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["call_id"], "tooluse_pref_1");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(done["usage"]["input_tokens"], 40);
    assert_eq!(done["usage"]["output_tokens"], 12);

    // The next turn sends the output back with the tool's result: the signed reasoning
    // reaches Bedrock first in the assistant turn, thinking stays on.
    h.server.clear();
    let mut input = body["input"].as_array().unwrap().clone();
    input.extend(output.iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "tooluse_pref_1", "output": "18C and sunny"}));
    let next = json!({"model": "claude", "stream": true, "input": input, "tools": [weather_tool()],
        "reasoning": {"effort": "medium"}});
    let (status, _, bytes) = post(&h, "/v1/responses", &next).await;
    assert_eq!(status, 200);
    let ev = events(&bytes);
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed", "{done}");
    let text = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "message")
        .expect("a message")["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("18C and sunny"), "{text}");
    let rec = h.server.recorded();
    let c = &rec[0].body;
    assert!(
        c["additionalModelRequestFields"]["thinking"].is_object(),
        "{c}"
    );
    let assistant = &c["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(
        assistant["content"][0]["reasoningContent"]["reasoningText"]["signature"],
        "test-signature"
    );
    assert_eq!(
        assistant["content"][0]["reasoningContent"]["reasoningText"]["text"],
        "I will run the command."
    );
    assert_eq!(
        assistant["content"][1]["toolUse"]["toolUseId"],
        "tooluse_pref_1"
    );
    assert_eq!(
        c["messages"][2]["content"][0]["toolResult"]["content"][0]["text"],
        "18C and sunny"
    );

    // Altered sealed content does not open: the item is dropped and counted.
    h.server.clear();
    let mut forged = next.clone();
    let items = forged["input"].as_array_mut().unwrap();
    let rs = items.iter_mut().find(|i| i["type"] == "reasoning").unwrap();
    let mut s = rs["encrypted_content"].as_str().unwrap().to_string();
    let flipped = if s.ends_with('A') { 'B' } else { 'A' };
    s.pop();
    s.push(flipped);
    rs["encrypted_content"] = json!(s);
    forged["stream"] = json!(false);
    let (status, headers, _) = post(&h, "/v1/responses", &forged).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-pennyworth-dropped-reasoning"], "1");
    let c = &h.server.recorded()[0].body;
    assert!(
        !c.to_string().contains("reasoningContent"),
        "no forged reasoning reaches Bedrock"
    );
}

#[tokio::test]
async fn custom_tools_are_called_and_answered_as_custom_tool_calls() {
    let h = Harness::start().await;
    h.server.prefer_tool(
        "apply_patch",
        json!({"input": "*** Begin Patch\n*** End Patch"}),
    );
    let tools = json!([{"type": "custom", "name": "apply_patch", "description": "Patch files"}]);
    let body = json!({"model": "claude", "stream": true, "input": "patch it", "tools": tools});
    let (status, _, bytes) = post(&h, "/v1/responses", &body).await;
    assert_eq!(status, 200);
    let ev = events(&bytes);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"response.custom_tool_call_input.delta"),
        "{names:?}"
    );
    let done_ev = ev
        .iter()
        .find(|(n, _)| n == "response.custom_tool_call_input.done")
        .expect("input done");
    assert_eq!(done_ev.1["input"], "*** Begin Patch\n*** End Patch");
    let done = &ev.last().unwrap().1["response"];
    let call = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "custom_tool_call")
        .expect("custom call")
        .clone();
    assert_eq!(call["input"], "*** Begin Patch\n*** End Patch");

    // Sent back, it is a tool use with the one string argument and a tool result.
    h.server.clear();
    let input = json!([
        {"role": "user", "content": "patch it"},
        call,
        {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"},
    ]);
    let (status, _, bytes) = post(
        &h,
        "/v1/responses",
        &json!({"model": "claude", "input": input, "tools": tools}),
    )
    .await;
    assert_eq!(status, 200, "{bytes:?}");
    let c = &h.server.recorded()[0].body;
    assert_eq!(
        c["messages"][1]["content"][0]["toolUse"]["input"],
        json!({"input": "*** Begin Patch\n*** End Patch"})
    );
    assert_eq!(
        c["messages"][2]["content"][0]["toolResult"]["content"][0]["text"],
        "Done!"
    );
}

#[tokio::test]
async fn max_output_tokens_gives_an_incomplete_response() {
    let h = Harness::start().await;
    h.server.script(
        "*",
        [Reply::Converse(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Once upon"}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7, "cacheReadInputTokens": 3},
            "metrics": {"latencyMs": 1}
        }))],
    );
    let (status, _, bytes) = post(
        &h,
        "/v1/responses",
        &json!({"model": "claude", "input": "a story", "max_output_tokens": 2}),
    )
    .await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 3);
}

#[tokio::test]
async fn compact_summarizes_the_history_through_the_model() {
    let h = Harness::start().await;
    h.server.script("*", [Reply::text("We listed files.")]);
    let body = json!({"model": "claude", "instructions": "You are Codex.", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a.txt"}]},
    ]});
    let (status, _, bytes) = post(&h, "/v1/responses/compact", &body).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{v}");
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["content"][0]["text"], "list files");
    assert!(
        out[1]["content"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("We listed files.")
    );
    let c = &h.server.recorded()[0].body;
    assert!(
        c["messages"][2]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Summarize")
    );
}
