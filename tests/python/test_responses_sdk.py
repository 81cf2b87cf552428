"""The official OpenAI Python SDK's Responses API against `pennyworth serve` with a Bedrock alias.

`tests/responses_sdk.rs` starts the Bedrock test server on 127.0.0.1 (streamed turns that offer
`get_weather` answer with signed thinking and a call of it), points the alias at it, starts the
gateway and runs this script with PENNYWORTH_BASE_URL, PENNYWORTH_API_KEY and PENNYWORTH_MODEL.
Without tools the server answers a greeting; buffered turns with tools call the first tool
with each required argument "Paris"; a turn holding tool results gets them quoted back.
Every case runs; one line per case and a summary; exit 1 on a failure.
"""

import json
import os
import sys
import traceback
import urllib.error
import urllib.request

import openai
import pydantic
from openai.types.responses import Response, ResponseStreamEvent

from cases import case, expect_eq, run

BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")
MODEL = os.environ.get("PENNYWORTH_MODEL", "claude")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files"}
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30.0)



@case
def create_text():
    r = client().responses.create(
        model=MODEL, instructions="Be brief.", input="Hello", store=False, max_output_tokens=200
    )
    expect_eq(r.object, "response", "object")
    expect_eq(r.status, "completed", "status")
    expect_eq(r.output_text, "Hello from Bedrock", "output_text")
    expect_eq(r.store, False, "store")
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage


@case
def stream_text():
    with client().responses.stream(model=MODEL, input="Hello") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    expect_eq(kinds[0], "response.created", "first event")
    expect_eq(kinds[-1], "response.completed", "last event")
    assert "response.output_text.delta" in kinds, kinds
    expect_eq(final.output_text, "Hello from Bedrock", "final text")


@case
def function_tool_round_trip():
    c = client()
    first = c.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER])
    calls = [i for i in first.output if i.type == "function_call"]
    expect_eq(len(calls), 1, "function calls")
    expect_eq(calls[0].name, "get_weather", "name")
    expect_eq(calls[0].arguments, '{"city":"Paris"}', "arguments")
    history = [{"role": "user", "content": "Weather in Paris?"}] + [
        i.model_dump(exclude_none=True) for i in first.output
    ]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"})
    second = c.responses.create(model=MODEL, input=history, tools=[WEATHER])
    expect_eq(second.output_text, "The tool said: 18C", "answer")


@case
def custom_tool_call():
    r = client().responses.create(model=MODEL, input="Fix the typo.", tools=[PATCH])
    calls = [i for i in r.output if i.type == "custom_tool_call"]
    expect_eq(len(calls), 1, "custom calls")
    expect_eq(calls[0].name, "apply_patch", "name")
    expect_eq(calls[0].input, "Paris", "input")
    back = [{"role": "user", "content": "Fix the typo."}, calls[0].model_dump(exclude_none=True),
            {"type": "custom_tool_call_output", "call_id": calls[0].call_id, "output": "patched"}]
    r2 = client().responses.create(model=MODEL, input=back, tools=[PATCH])
    expect_eq(r2.output_text, "The tool said: patched", "answer")


@case
def json_schema_output():
    r = client().responses.create(
        model=MODEL,
        input="Name a city.",
        text={"format": {"type": "json_schema", "name": "city", "strict": True, "schema": {
            "type": "object", "properties": {"name": {"type": "string"}},
            "required": ["name"], "additionalProperties": False}}},
    )
    expect_eq(r.text.format.type, "json_schema", "format echoed")
    expect_eq(r.status, "completed", "status")


@case
def image_input():
    r = client().responses.create(model=MODEL, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": PNG, "detail": "low"}]}])
    expect_eq(r.status, "completed", "status")


@case
def reasoning_round_trip_streamed():
    c = client()
    with c.responses.stream(
        model=MODEL,
        input="Weather in Paris?",
        tools=[WEATHER],
        reasoning={"effort": "medium", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
    ) as stream:
        kinds = [e.type for e in stream]
        first = stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in kinds, kinds
    assert "response.function_call_arguments.delta" in kinds, kinds
    reasoning = [i for i in first.output if i.type == "reasoning"]
    expect_eq(len(reasoning), 1, "reasoning items")
    assert reasoning[0].encrypted_content, "sealed content given"
    expect_eq(reasoning[0].summary[0].text, "I will run the command.", "summary")
    call = [i for i in first.output if i.type == "function_call"][0]
    history = [{"role": "user", "content": "Weather in Paris?"}] + [
        i.model_dump(exclude_none=True) for i in first.output
    ]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "21C"})
    with c.responses.stream(
        model=MODEL, input=history, tools=[WEATHER], reasoning={"effort": "medium"}
    ) as stream:
        final = stream.get_final_response()
    expect_eq(final.output_text, "The tool said: 21C", "answer")


@case
def stateful_request_is_refused():
    try:
        client().responses.create(model=MODEL, input="Hi", previous_response_id="resp_123")
    except openai.BadRequestError as e:
        expect_eq(e.param, "previous_response_id", "param")
        assert "no conversation state" in str(e), str(e)
    else:
        raise AssertionError("previous_response_id was accepted")


class Raw:
    def __init__(self, status_code, text):
        self.status_code = status_code
        self.text = text

    def json(self):
        return json.loads(self.text)


def raw_post(body):
    req = urllib.request.Request(
        f"{BASE_URL}/responses",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Raw(r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        return Raw(e.code, e.read().decode())


def sse(text):
    """The `data:` payloads of an SSE body (comments skipped), with their `event:` names."""
    out = []
    for chunk in text.split("\n\n"):
        lines = [l for l in chunk.split("\n") if l and not l.startswith(":")]
        if not lines:
            continue
        name = next(l[len("event: "):] for l in lines if l.startswith("event: "))
        data = json.loads(next(l[len("data: "):] for l in lines if l.startswith("data: ")))
        expect_eq(data["type"], name, "event name")
        out.append(data)
    return out


@case
def every_response_and_event_matches_the_openai_types():
    """Each answer and stream event validates against the OpenAI API's types as generated into
    the official SDK from the OpenAPI specification (a missing or mistyped field, or an unknown
    event type, fails)."""
    events = pydantic.TypeAdapter(ResponseStreamEvent)
    seen = set()
    bodies = [
        {"model": MODEL, "input": "Hello", "metadata": {"k": "v"}},
        {"model": MODEL, "input": "Weather?", "tools": [WEATHER]},
        {"model": MODEL, "input": "Patch", "tools": [PATCH]},
        {"model": MODEL, "input": "A city.", "text": {"format": {"type": "json_schema", "name": "c",
            "schema": {"type": "object", "properties": {}}}, "verbosity": "low"}},
    ]
    for body in bodies:
        r = raw_post(body)
        expect_eq(r.status_code, 200, "status")
        Response.model_validate(r.json())
        for stream_body in (
            dict(body, stream=True),
            dict(body, stream=True, reasoning={"effort": "low", "summary": "auto"},
                 include=["reasoning.encrypted_content"]),
        ):
            r = raw_post(stream_body)
            expect_eq(r.status_code, 200, "stream status")
            for i, e in enumerate(sse(r.text)):
                expect_eq(e["sequence_number"], i, "sequence_number")
                parsed = events.validate_python(e)
                expect_eq(parsed.type, e["type"], "event type")
                if "response" in e:
                    Response.model_validate(e["response"])
                seen.add(e["type"])
    for kind in (
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
    ):
        assert kind in seen, f"{kind} never validated (seen: {sorted(seen)})"
    r = raw_post({"model": MODEL, "input": "Hi", "conversation": "conv_1"})
    expect_eq(r.status_code, 400, "stateless status")
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err


def main():
    return run("responses-sdk", f"openai SDK {openai.__version__} Responses API against {BASE_URL} (model {MODEL})", BASE_URL, API_KEY)


if __name__ == "__main__":
    sys.exit(main())
