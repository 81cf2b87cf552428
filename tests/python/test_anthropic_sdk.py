"""The official Anthropic Python SDK against `pennyworth serve` with a Bedrock alias.

`tests/openai_sdk.rs` (test `anthropic_python_sdk_against_bedrock`) starts the Bedrock test
server, points the alias at it, starts the gateway and runs this script with
PENNYWORTH_BASE_URL (the gateway's root, without `/v1`), PENNYWORTH_API_KEY and PENNYWORTH_MODEL.
The test server enforces Bedrock's request rules (alternation, toolConfig with tool history,
signed thinking before tool use, non-empty tool results, at most 4 cache points), so a wrong
mapping fails here. Every case runs; the script prints one line per case and a summary.
"""

import base64
import os
import sys
import traceback

import anthropic

from cases import case, expect_eq, run

# The SDK appends `/v1/messages` itself: the gateway's root.
BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "").removesuffix("/v1")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")
MODEL = os.environ.get("PENNYWORTH_MODEL", "claude")
DENIED_MODEL = os.environ.get("PENNYWORTH_DENIED_MODEL", "")

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# A 1x1 PNG and a minimal PDF.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n").decode()

def client(key=None):
    return anthropic.Anthropic(base_url=BASE_URL, api_key=key or API_KEY, max_retries=0, timeout=30.0)



@case
def message_buffered():
    r = client().messages.create(
        model=MODEL,
        max_tokens=100,
        system=[{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
    )
    expect_eq(r.type, "message", "type")
    expect_eq(r.role, "assistant", "role")
    expect_eq(r.content[0].type, "text", "block type")
    expect_eq(r.content[0].text, "Hello from Bedrock", "text")
    expect_eq(r.stop_reason, "end_turn", "stop_reason")
    expect_eq(r.usage.input_tokens, 12, "input_tokens")
    expect_eq(r.usage.output_tokens, 5, "output_tokens")


@case
def message_streamed():
    with client().messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expect_eq(text, "Hello from Bedrock", "streamed text")
    expect_eq(final.stop_reason, "end_turn", "stop_reason")
    expect_eq(final.usage.output_tokens, 3, "output_tokens")


@case
def tool_use_round_trip():
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = client().messages.create(model=MODEL, max_tokens=200, tools=[WEATHER], messages=messages)
    expect_eq(r.stop_reason, "tool_use", "stop_reason")
    call = [b for b in r.content if b.type == "tool_use"][0]
    expect_eq(call.name, "get_weather", "tool name")
    expect_eq(call.input, {"city": "Paris"}, "tool input")
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]},
    ]
    r = client().messages.create(model=MODEL, max_tokens=200, tools=[WEATHER], messages=messages)
    expect_eq(r.content[0].text, "The tool said: 18C and sunny", "answer from the tool result")


@case
def tool_use_streamed():
    with client().messages.stream(
        model=MODEL, max_tokens=200, tools=[WEATHER], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    call = [b for b in final.content if b.type == "tool_use"][0]
    expect_eq(call.input, {"city": "Paris"}, "streamed tool input")
    expect_eq(final.stop_reason, "tool_use", "stop_reason")


@case
def thinking_round_trip_with_tools():
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Call the tool.", "signature": "sig-from-before"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "rain"}]},
        ]},
    ]
    r = client().messages.create(
        model=MODEL, max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER], messages=messages,
    )
    expect_eq(r.content[0].text, "The tool said: rain", "answer after the signed thinking went back")


@case
def image_and_pdf():
    r = client().messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
             "title": "report.pdf", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "describe"},
        ]}],
    )
    expect_eq(r.content[0].text, "Hello from Bedrock", "text")


@case
def count_tokens():
    r = client().messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "one two three four"}])
    assert r.input_tokens > 0, r


@case
def models_listed():
    ids = [m.id for m in client().models.list().data]
    assert MODEL in ids, ids


@case
def errors_have_their_status():
    try:
        client(key="pw-not-a-real-key").messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("a bad key was accepted")
    except anthropic.AuthenticationError as e:
        expect_eq(e.status_code, 401, "status")
    try:
        client().messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("an unknown model was accepted")
    except anthropic.NotFoundError as e:
        expect_eq(e.body["error"]["type"], "not_found_error", "error type")
    try:
        client().messages.create(model=MODEL, max_tokens=10, messages=[{"role": "robot", "content": "hi"}])
        raise AssertionError("a bad role was accepted")
    except anthropic.BadRequestError as e:
        expect_eq(e.status_code, 400, "status")
    if DENIED_MODEL:
        try:
            client().messages.create(model=DENIED_MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            raise AssertionError("a denied model was served")
        except anthropic.NotFoundError as e:
            # Hidden and unknown aliases answer alike.
            expect_eq(e.status_code, 404, "status")
            expect_eq(e.body["error"]["type"], "not_found_error", "error type")


def main():
    return run("anthropic-sdk", f"anthropic SDK {anthropic.__version__} against {BASE_URL} (model {MODEL})", BASE_URL, API_KEY)


if __name__ == "__main__":
    sys.exit(main())
