//! `/v1/mcp` through the Lambda front end: API Gateway REST (v1) events decoded by
//! `lambda_http` and answered by the adapter, unchanged from the local server.

mod common;

use serde_json::{Value, json};

fn rest_event(key: Option<&str>, body: &Value, extra: &[(&str, &str)]) -> lambda_http::Request {
    let host = "gy415nuibc.execute-api.us-east-1.amazonaws.com";
    let mut headers = json!({
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Host": host,
        "X-Forwarded-Proto": "https",
    });
    if let Some(k) = key {
        headers["Authorization"] = json!(format!("Bearer {k}"));
    }
    for (k, v) in extra {
        headers[*k] = json!(v);
    }
    let multi: serde_json::Map<String, Value> = headers
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    let event = json!({
        "resource": "/{proxy+}",
        "path": "/v1/mcp",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": {"proxy": "v1/mcp"},
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "resourceId": "roq9wj", "path": "/prod/v1/mcp", "stage": "prod",
            "domainName": host, "domainPrefix": "gy415nuibc",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "54.240.196.186", "userAgent": "mcp"},
            "resourcePath": "/{proxy+}", "httpMethod": "POST", "requestTime": "23/Nov/2026:10:00:01 +0000",
            "requestTimeEpoch": 1795428001000u64, "apiId": "gy415nuibc"
        },
        "body": body.to_string(),
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("event decodes")
}

async fn run(
    engine: &pennyworth::Engine,
    req: lambda_http::Request,
) -> (u16, http::HeaderMap, Value) {
    let resp = pennyworth::lambda::handle(engine, req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body");
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    (parts.status.as_u16(), parts.headers, v)
}

#[tokio::test]
async fn mcp_over_api_gateway_rest() {
    let (engine, dir) = common::engine(&common::repo_root()).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "chat", "arguments": {"model": "echo", "prompt": "through lambda"}, "_meta": meta}});
    let (status, _, v) = run(
        &engine,
        rest_event(
            Some(dir.key("user")),
            &call,
            &[
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "chat"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "through lambda", "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");

    let init = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, v) = run(&engine, rest_event(Some(dir.key("user")), &init, &[])).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18");

    // Without a key: 401 whose challenge names the metadata on the API's https host.
    let (status, headers, _) = run(&engine, rest_event(None, &init, &[])).await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().expect("ascii");
    assert!(
        challenge.contains("resource_metadata=\"https://gy415nuibc.execute-api.us-east-1.amazonaws.com/.well-known/oauth-protected-resource/v1/mcp\""),
        "{challenge}"
    );
}
