"""The official OpenAI Python SDK against `pennyworth serve` with a Bedrock alias.

`tests/openai_sdk.rs` (test `openai_python_sdk_against_bedrock`) starts the Bedrock test
server on 127.0.0.1, points the alias at it with `endpoint_url` in models.yaml, starts the
gateway and runs this script with PENNYWORTH_BASE_URL, PENNYWORTH_API_KEY and PENNYWORTH_MODEL.

The test server answers a greeting; when tools are offered it calls the first one with each
required argument set to "Paris"; when the last turn holds tool results it quotes them back.
Every case runs; the script prints one line per case and a summary, and exits 1 on a failure.
"""

import json
import os
import sys
import traceback

import openai

from cases import case, expect_eq, run

BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")
MODEL = os.environ.get("PENNYWORTH_MODEL", "claude")
EMBEDDING_MODEL = os.environ.get("PENNYWORTH_EMBEDDING_MODEL", "titan")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30.0)



@case
def model_is_listed():
    ids = [m.id for m in client().models.list().data]
    assert MODEL in ids, f"{MODEL} not in {ids}"


@case
def chat_buffered():
    r = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}],
        temperature=0.5,
        max_tokens=100,
    )
    expect_eq(r.object, "chat.completion", "object")
    expect_eq(r.model, MODEL, "model")
    expect_eq(r.choices[0].message.role, "assistant", "role")
    expect_eq(r.choices[0].message.content, "Hello from Bedrock", "content")
    expect_eq(r.choices[0].finish_reason, "stop", "finish_reason")
    expect_eq(r.usage.prompt_tokens, 12, "prompt_tokens")
    expect_eq(r.usage.completion_tokens, 5, "completion_tokens")
    expect_eq(r.usage.total_tokens, 17, "total_tokens")


@case
def chat_stream():
    chunks = list(
        client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, last = chunks
    text = "".join(c.choices[0].delta.content or "" for c in body)
    expect_eq(text, "Hello from Bedrock", "joined deltas")
    assert len([c for c in body if c.choices[0].delta.content]) >= 3, "one chunk per upstream delta"
    expect_eq(body[-1].choices[0].finish_reason, "stop", "finish_reason")
    expect_eq(last.choices, [], "usage chunk has no choices")
    expect_eq(last.usage.prompt_tokens, 12, "prompt_tokens")


@case
def tool_calling_round_trip():
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = client().chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], tool_choice="auto")
    choice = r.choices[0]
    expect_eq(choice.finish_reason, "tool_calls", "finish_reason")
    expect_eq(choice.message.content, None, "content of a tool-call answer")
    calls = choice.message.tool_calls
    expect_eq(len(calls), 1, "tool calls")
    expect_eq(calls[0].type, "function", "type")
    expect_eq(calls[0].function.name, "get_weather", "name")
    expect_eq(json.loads(calls[0].function.arguments), {"city": "Paris"}, "arguments")

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": "18 C and sunny"})
    r = client().chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    expect_eq(r.choices[0].finish_reason, "stop", "finish_reason after the tool result")
    expect_eq(r.choices[0].message.content, "The tool said: 18 C and sunny", "answer")


@case
def tool_calling_stream():
    chunks = list(
        client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER],
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) >= 2, f"expected a start and argument deltas, got {deltas!r}"
    expect_eq({d.index for d in deltas}, {0}, "tool call indexes")
    expect_eq(deltas[0].id, "tooluse_test_1", "id in the first delta")
    expect_eq(deltas[0].function.name, "get_weather", "name in the first delta")
    args = "".join(d.function.arguments or "" for d in deltas)
    expect_eq(json.loads(args), {"city": "Paris"}, "joined arguments")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expect_eq(finishes, ["tool_calls"], "finish reasons")


def test_vector(text, dims):
    """The test server's vector for a text: its length, then a ramp."""
    return [float(len(text))] + [i / 8 for i in range(1, dims)]


@case
def embeddings_default_encoding():
    # The SDK asks for base64 by default and decodes it.
    r = client().embeddings.create(model=EMBEDDING_MODEL, input=["hello world", "bye"])
    expect_eq(r.object, "list", "object")
    expect_eq(r.model, EMBEDDING_MODEL, "model")
    expect_eq([d.index for d in r.data], [0, 1], "indexes")
    expect_eq(r.data[0].embedding, test_vector("hello world", 8), "first vector")
    expect_eq(r.data[1].embedding, test_vector("bye", 8), "second vector")
    expect_eq(r.usage.prompt_tokens, 3, "prompt_tokens")


@case
def embeddings_float_with_dimensions():
    r = client().embeddings.create(model=EMBEDDING_MODEL, input="abc", dimensions=256, encoding_format="float")
    expect_eq(len(r.data[0].embedding), 256, "dimensions")
    expect_eq(r.data[0].embedding[:3], [3.0, 0.125, 0.25], "vector start")


@case
def legacy_completions():
    r = client().completions.create(model=MODEL, prompt="Say hi", max_tokens=20)
    expect_eq(r.object, "text_completion", "object")
    expect_eq(r.choices[0].text, "Hello from Bedrock", "text")
    expect_eq(r.choices[0].finish_reason, "stop", "finish_reason")
    chunks = list(client().completions.create(model=MODEL, prompt="Say hi", stream=True))
    expect_eq("".join(c.choices[0].text for c in chunks if c.choices), "Hello from Bedrock", "streamed text")


@case
def image_url_must_be_inline():
    try:
        client().chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    ],
                }
            ],
        )
    except openai.BadRequestError as e:
        expect_eq(e.param, "messages[0].content[1].image_url.url", "param")
    else:
        raise AssertionError("an http image URL was accepted")


def main():
    return run("openai-sdk-bedrock", f"openai SDK {openai.__version__} against {BASE_URL} (model {MODEL})", BASE_URL, API_KEY)


if __name__ == "__main__":
    sys.exit(main())
