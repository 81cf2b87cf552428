//! The direct Bedrock client (`providers::bedrock::client`) on its own, against the test
//! server and bare sockets on 127.0.0.1: which failures it retries and how often, the SigV4
//! signature it puts on the wire (checked with `aws-sigv4`), and a stream that ends in an
//! exception event.

#[path = "support/bedrock.rs"]
mod bedrock_server;
mod common;

use aws_sdk_bedrockruntime::config::Credentials;
use bedrock_server::{BedrockServer, Item, Reply, event};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use pennyworth::inference::{Delta, Event};
use pennyworth::providers::ProviderError;
use pennyworth::providers::bedrock::client::{Auth, Client};
use pennyworth::providers::bedrock::sign::CredentialCache;
use pennyworth::providers::bedrock::stream;
use pennyworth::upstream::{RetryPolicy, http_client_with};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

const MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const ACCESS_KEY: &str = "AKIDDIRECTTEST";
const SECRET: &str = "direct-test-secret";

fn creds(token: Option<&str>) -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET, token.map(str::to_string), None, "test")
}

fn client(url: &str, max_attempts: u32, token: Option<&str>) -> Client {
    Client::new(
        http_client_with(Some(Duration::from_secs(1))).unwrap(),
        url,
        "us-east-1",
        Auth::SigV4(CredentialCache::fixed(creds(token))),
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
    )
    .unwrap()
}

fn body() -> Bytes {
    Bytes::from(json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).to_string())
}

/// Sends one Converse call; the log lines of the retries it made.
async fn converse(c: &Client) -> (Result<Bytes, ProviderError>, usize) {
    let logs = common::logs::capture();
    let path = Client::path(MODEL, "converse");
    let out = match c.send("claude", &path, body()).await {
        Ok(r) => Ok(r.into_body().collect().await.unwrap().to_bytes()),
        Err(e) => Err(e),
    };
    let retries = logs
        .records("pennyworth::providers::bedrock::client")
        .iter()
        .filter(|f| f["message"] == "retrying the Bedrock call")
        .count();
    (out, retries)
}

/// Sends one ConverseStream call (no retries) to `url`; every item its event stream yields.
async fn converse_stream(url: &str) -> Vec<Result<Event, ProviderError>> {
    let c = client(url, 1, None);
    let path = Client::path(MODEL, "converse-stream");
    let response = c.send("claude", &path, body()).await.unwrap();
    stream::events(response.into_body(), "claude")
        .collect()
        .await
}

#[tokio::test]
async fn throttling_is_retried_up_to_max_attempts_then_mapped() {
    let server = BedrockServer::start().await;
    server.script(
        MODEL,
        std::iter::repeat_n(Reply::error(429, "ThrottlingException", "slow down"), 5),
    );
    let (out, retries) = converse(&client(&server.url(), 4, None)).await;
    assert!(
        matches!(out, Err(ProviderError::Throttled { .. })),
        "{out:?}"
    );
    assert_eq!(server.recorded().len(), 4);
    assert_eq!(retries, 3);
}

#[tokio::test]
async fn validation_errors_are_not_retried() {
    let server = BedrockServer::start().await;
    server.script(
        MODEL,
        [Reply::error(400, "ValidationException", "bad input")],
    );
    let (out, retries) = converse(&client(&server.url(), 3, None)).await;
    assert!(
        matches!(&out, Err(ProviderError::UpstreamValidation(m)) if m == "bad input"),
        "{out:?}"
    );
    assert_eq!(server.recorded().len(), 1);
    assert_eq!(retries, 0);
    for (status, kind) in [
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
        (429, "ServiceQuotaExceededException"),
        (408, "ModelTimeoutException"),
    ] {
        server.clear();
        server.script(MODEL, [Reply::error(status, kind, "no")]);
        let (out, _) = converse(&client(&server.url(), 3, None)).await;
        assert!(out.is_err(), "{kind}");
        assert_eq!(server.recorded().len(), 1, "{kind} is not retried");
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_the_answer_returned() {
    let server = BedrockServer::start().await;
    for (status, kind) in [
        (500, "InternalServerException"),
        (502, "BadGateway"),
        (503, "ServiceUnavailableException"),
        (504, "GatewayTimeout"),
        (429, "ModelNotReadyException"),
    ] {
        server.clear();
        server.script(
            MODEL,
            [Reply::error(status, kind, "later"), Reply::text("ok")],
        );
        let (out, retries) = converse(&client(&server.url(), 3, None)).await;
        let answer: serde_json::Value = serde_json::from_slice(&out.unwrap()).unwrap();
        assert_eq!(answer["output"]["message"]["content"][0]["text"], "ok");
        assert_eq!(server.recorded().len(), 2, "{status} {kind}");
        assert_eq!(retries, 1);
    }
    // Every attempt failing: the last error, mapped.
    server.clear();
    server.script(
        MODEL,
        std::iter::repeat_n(Reply::error(503, "ServiceUnavailableException", "down"), 3),
    );
    let (out, _) = converse(&client(&server.url(), 2, None)).await;
    assert!(matches!(out, Err(ProviderError::Upstream)), "{out:?}");
    assert_eq!(server.recorded().len(), 2);
}

#[tokio::test]
async fn connection_failures_are_retried() {
    // Refused: nothing listens on the port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (out, retries) = converse(&client(&format!("http://127.0.0.1:{port}"), 3, None)).await;
    assert!(matches!(out, Err(ProviderError::Upstream)), "{out:?}");
    assert_eq!(retries, 2);

    // Closed: each connection accepted, then closed before an answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let (out, retries) = converse(&client(&url, 3, None)).await;
    task.abort();
    assert!(matches!(out, Err(ProviderError::Upstream)), "{out:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(retries, 2);
}

/// The `authorization` header `aws-sigv4` computes for the request the server recorded.
fn expected_signature(r: &bedrock_server::Recorded, host: &str, raw_path: &str) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let date = r.headers["x-amz-date"].to_str().unwrap();
    let time = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            aws_smithy_types::DateTime::from_str(
                &format!(
                    "{}-{}-{}T{}:{}:{}Z",
                    &date[0..4],
                    &date[4..6],
                    &date[6..8],
                    &date[9..11],
                    &date[11..13],
                    &date[13..15]
                ),
                aws_smithy_types::date_time::Format::DateTime,
            )
            .unwrap()
            .secs() as u64,
        );
    let creds = creds(
        r.headers
            .get("x-amz-security-token")
            .map(|v| v.to_str().unwrap()),
    );
    let identity = creds.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    // The body as sent: the server parsed it keeping the members' order.
    let sent = serde_json::to_vec(&r.body).unwrap();
    let headers = [("content-type", "application/json"), ("host", host)];
    let request = SignableRequest::new(
        "POST",
        format!("http://{host}{raw_path}"),
        headers.into_iter(),
        SignableBody::Bytes(&sent),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let (headers, _) = instructions.into_parts();
    headers
        .iter()
        .find(|h| h.name() == "authorization")
        .map(|h| h.value().to_string())
        .unwrap()
}

#[tokio::test]
async fn the_signature_on_the_wire_is_what_aws_sigv4_computes() {
    let server = BedrockServer::start().await;
    let host = server.url().trim_start_matches("http://").to_string();
    for token in [None, Some("session-token/with+chars=")] {
        server.clear();
        let (out, _) = converse(&client(&server.url(), 1, token)).await;
        out.unwrap();
        let r = &server.recorded()[0];
        assert_eq!(r.headers["host"], host.as_str());
        assert_eq!(
            r.headers
                .get("x-amz-security-token")
                .map(|v| v.to_str().unwrap()),
            token
        );
        let raw_path = Client::path(MODEL, "converse");
        assert_eq!(
            r.authorization(),
            expected_signature(r, &host, &raw_path),
            "token {token:?}"
        );
    }
}

#[tokio::test]
async fn an_exception_mid_stream_ends_the_stream_with_its_error() {
    let server = BedrockServer::start().await;
    for (kind, expected) in [
        ("throttlingException", "throttled"),
        ("validationException", "validation"),
        ("modelStreamErrorException", "upstream"),
        ("somethingNewException", "upstream"),
    ] {
        server.script(
            MODEL,
            [Reply::Stream(vec![
                event("messageStart", json!({"role": "assistant"})),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
                ),
                Item::Exception(kind.into(), "it broke".into()),
                event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "never"}}),
                ),
            ])],
        );
        let items = converse_stream(&server.url()).await;
        assert!(
            matches!(items[0], Ok(Event::BlockStart { index: 0, .. })),
            "{items:?}"
        );
        assert!(
            matches!(&items[1], Ok(Event::Delta { delta: Delta::Text(t), .. }) if t == "Hel"),
            "{items:?}"
        );
        assert_eq!(
            items.len(),
            3,
            "{kind}: nothing after the exception: {items:?}"
        );
        let err = items[2].as_ref().unwrap_err();
        let got = match err {
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::UpstreamValidation(m) if m == "it broke" => "validation",
            ProviderError::Upstream => "upstream",
            other => panic!("{kind}: {other:?}"),
        };
        assert_eq!(got, expected, "{kind}");
    }
}

#[tokio::test]
async fn a_stream_cut_inside_a_frame_is_an_upstream_error() {
    // A raw HTTP server answering half an event-stream frame, then closing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut buf).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nconnection: close\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        // A prelude announcing 100 bytes (with its CRC), then only 4 more.
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&100u32.to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        prelude.extend_from_slice(b"{}{}");
        socket.write_all(&prelude).await.unwrap();
    });
    let items = converse_stream(&url).await;
    task.abort();
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        matches!(items[0], Err(ProviderError::Upstream)),
        "{items:?}"
    );
}

#[tokio::test]
async fn endpoints_follow_the_sdk_rules_once_per_client() {
    use pennyworth::providers::bedrock::client::{EndpointSettings, resolve_endpoint};
    let at = |region: &str, endpoint_url: Option<&str>, use_fips: bool, use_dual_stack: bool| {
        EndpointSettings {
            region: region.into(),
            endpoint_url: endpoint_url.map(str::to_string),
            use_fips,
            use_dual_stack,
        }
    };
    for (settings, expected) in [
        (
            at("us-east-1", None, false, false),
            "https://bedrock-runtime.us-east-1.amazonaws.com",
        ),
        (
            at("eu-west-3", None, false, false),
            "https://bedrock-runtime.eu-west-3.amazonaws.com",
        ),
        (
            at("us-east-1", None, true, false),
            "https://bedrock-runtime-fips.us-east-1.amazonaws.com",
        ),
        (
            at("cn-north-1", None, false, false),
            "https://bedrock-runtime.cn-north-1.amazonaws.com.cn",
        ),
        (
            at("us-east-1", Some("http://127.0.0.1:4010"), false, false),
            "http://127.0.0.1:4010",
        ),
    ] {
        assert_eq!(
            resolve_endpoint(&settings).await.unwrap(),
            expected,
            "{settings:?}"
        );
    }
    assert!(
        resolve_endpoint(&at("not a region!", None, false, false))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_endpoint_with_a_path_prefix_is_called_and_signed_with_it() {
    let server = BedrockServer::start().await;
    let c = client(&format!("{}/prefix/", server.url()), 1, None);
    let response = c
        .send("claude", &Client::path(MODEL, "converse"), body())
        .await;
    // The test server routes on `/model/...`: a prefixed path is not a model call.
    drop(response);
    let r = &server.recorded()[0];
    assert!(r.path.starts_with("/prefix/model/"), "{}", r.path);
    let host = server.url().trim_start_matches("http://").to_string();
    let raw_path = format!("/prefix{}", Client::path(MODEL, "converse"));
    assert_eq!(r.authorization(), expected_signature(r, &host, &raw_path));
}

#[tokio::test]
async fn frames_split_across_reads_are_gathered() {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let mut wire = Vec::new();
    let words = ["Hello", " from", " a", " slow", " socket"];
    let mut events = vec![("messageStart", json!({"role": "assistant"}))];
    for w in words {
        events.push((
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": w}}),
        ));
    }
    events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
    events.push(("messageStop", json!({"stopReason": "end_turn"})));
    for (kind, payload) in events {
        let m = Message::new(Bytes::from(payload.to_string()))
            .add_header(Header::new(":event-type", HeaderValue::String(kind.into())))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ));
        aws_smithy_eventstream::frame::write_message_to(&m, &mut wire).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut buf).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\ncontent-length: {}\r\n\r\n",
            wire.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        // Pieces that cut every frame's prelude, headers and payload somewhere.
        for piece in wire.chunks(7) {
            socket.write_all(piece).await.unwrap();
            socket.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let items = converse_stream(&url).await;
    task.abort();
    let text: String = items
        .iter()
        .filter_map(|i| match i {
            Ok(Event::Delta {
                delta: Delta::Text(t),
                ..
            }) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello from a slow socket", "{items:?}");
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert!(
        matches!(items.last(), Some(Ok(Event::Stop(_)))),
        "{items:?}"
    );
}

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_a_bearer_token_unsigned() {
    let server = BedrockServer::start().await;
    let c = Client::new(
        http_client_with(Some(Duration::from_secs(1))).unwrap(),
        &server.url(),
        "us-east-1",
        Auth::bearer("bedrock-api-key-123").unwrap(),
        RetryPolicy::default(),
    )
    .unwrap();
    let (out, _) = converse(&c).await;
    out.unwrap();
    let r = &server.recorded()[0];
    assert_eq!(r.authorization(), "Bearer bedrock-api-key-123");
    assert!(!r.headers.contains_key("x-amz-date"));
    assert!(Auth::bearer("bad\nkey").is_none());
}
