"""End-to-end check of a running Pennyworth gateway with the official OpenAI Python SDK.

Usage:
    PENNYWORTH_BASE_URL=http://127.0.0.1:8080/v1 PENNYWORTH_API_KEY=pw-... \
        .venv/bin/python tests/python/test_openai_sdk.py

The key must be allowed to list and call the built-in `echo` model (the admin key from
`pennyworth init` is). Only `echo` is called, so nothing leaves the machine. Every case runs;
the script prints one line per case, a summary, and exits 1 if any case failed.

`tests/openai_sdk.rs` starts a gateway on a fresh store and runs this script against it.
"""

import os
import sys
import traceback

import openai

from cases import case, expect_eq, run

BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")

def client(api_key=None):
    # No retries: every answer the gateway gives is checked as it is, and a failure is fast.
    return openai.OpenAI(base_url=BASE_URL, api_key=api_key or API_KEY, max_retries=0, timeout=30.0)



def prompt_tokens(messages):
    """The echo model's prompt estimate: 4 per message plus its whitespace-separated words."""
    return sum(4 + len(m["content"].split()) for m in messages)


def expect_raises(error_class, call, what):
    """Runs `call`, expects `error_class`, returns the exception."""
    try:
        result = call()
    except error_class as e:
        return e
    except openai.APIStatusError as e:
        raise AssertionError(
            f"{what}: expected {error_class.__name__}, got {type(e).__name__} "
            f"(HTTP {e.status_code}, body {e.body!r})"
        ) from e
    raise AssertionError(f"{what}: expected {error_class.__name__}, but the call succeeded: {result!r}")


@case
def list_models():
    models = client().models.list()
    ids = [m.id for m in models.data]
    assert "echo" in ids, f"`echo` is not in GET /v1/models: {ids}"
    expect_eq(len(ids), len(set(ids)), "model ids are unique")
    for m in models.data:
        expect_eq(m.object, "model", f"object of model {m.id}")
        assert m.owned_by, f"model {m.id} has no owned_by"
        assert isinstance(m.created, int), f"created of model {m.id} is not an integer: {m.created!r}"


@case
def retrieve_model():
    m = client().models.retrieve("echo")
    expect_eq(m.id, "echo", "id")
    expect_eq(m.object, "model", "object")
    expect_eq(m.owned_by, "pennyworth", "owned_by")


@case
def retrieve_unknown_model():
    e = expect_raises(
        openai.NotFoundError, lambda: client().models.retrieve("no-such-model"), "GET /v1/models/no-such-model"
    )
    expect_eq(e.status_code, 404, "status")
    expect_eq(e.code, "model_not_found", "error code")


@case
def chat_buffered():
    messages = [
        {"role": "system", "content": "You are a parrot."},
        {"role": "user", "content": "the quick brown fox jumps over the lazy dog"},
    ]
    r = client().chat.completions.create(model="echo", messages=messages)
    assert r.id.startswith("chatcmpl-"), f"id does not start with chatcmpl-: {r.id!r}"
    expect_eq(r.object, "chat.completion", "object")
    expect_eq(r.model, "echo", "model")
    expect_eq(len(r.choices), 1, "number of choices")
    choice = r.choices[0]
    expect_eq(choice.index, 0, "choice index")
    expect_eq(choice.message.role, "assistant", "role")
    expect_eq(choice.message.content, "the quick brown fox jumps over the lazy dog", "content")
    expect_eq(choice.finish_reason, "stop", "finish_reason")
    assert r.usage is not None, "no usage in a buffered completion"
    expect_eq(r.usage.prompt_tokens, prompt_tokens(messages), "prompt_tokens")
    expect_eq(r.usage.prompt_tokens, 21, "prompt_tokens")
    expect_eq(r.usage.completion_tokens, 9, "completion_tokens")
    expect_eq(r.usage.total_tokens, 30, "total_tokens")


@case
def chat_answers_last_user_message():
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question here"},
    ]
    r = client().chat.completions.create(model="echo", messages=messages, temperature=0.2, top_p=0.9)
    expect_eq(r.choices[0].message.content, "second question here", "content")
    expect_eq(r.usage.prompt_tokens, prompt_tokens(messages), "prompt_tokens")
    expect_eq(r.usage.completion_tokens, 3, "completion_tokens")


@case
def chat_stream_with_usage():
    text = "streaming one word at a time keeps the chunks small"
    messages = [{"role": "user", "content": text}]
    stream = client().chat.completions.create(
        model="echo", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len(chunks) >= 3, f"expected several chunks, got {len(chunks)}"
    ids = {c.id for c in chunks}
    expect_eq(len(ids), 1, "distinct chunk ids")
    assert next(iter(ids)).startswith("chatcmpl-"), f"chunk id does not start with chatcmpl-: {ids}"
    for c in chunks:
        expect_eq(c.object, "chat.completion.chunk", "chunk object")
        expect_eq(c.model, "echo", "chunk model")

    *body, last = chunks
    # The final chunk carries the usage and no choices; every other chunk has usage null.
    expect_eq(last.choices, [], "choices of the usage chunk")
    assert last.usage is not None, "the last chunk has no usage although include_usage was set"
    expect_eq(last.usage.prompt_tokens, prompt_tokens(messages), "prompt_tokens")
    expect_eq(last.usage.completion_tokens, len(text.split()), "completion_tokens")
    expect_eq(last.usage.total_tokens, prompt_tokens(messages) + len(text.split()), "total_tokens")
    for c in body:
        assert c.usage is None, f"a chunk before the last has usage: {c!r}"
        expect_eq(len(c.choices), 1, "choices in a content chunk")

    expect_eq(body[0].choices[0].delta.role, "assistant", "role of the first delta")
    content = [c.choices[0].delta.content for c in body if c.choices[0].delta.content]
    expect_eq("".join(content), text, "joined deltas")
    expect_eq(len(content), len(text.split()), "number of content chunks (one per word)")
    finishes = [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason]
    expect_eq(finishes, ["stop"], "finish reasons in the stream")
    expect_eq(body[-1].choices[0].finish_reason, "stop", "finish_reason of the last choice chunk")


@case
def chat_stream_without_usage():
    text = "no usage chunk please"
    stream = client().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks), "a chunk has usage although include_usage was not set"
    assert all(len(c.choices) == 1 for c in chunks), "a chunk without choices although include_usage was not set"
    expect_eq("".join(c.choices[0].delta.content or "" for c in chunks), text, "joined deltas")
    expect_eq(chunks[-1].choices[0].finish_reason, "stop", "finish_reason")


@case
def max_tokens_truncates():
    messages = [{"role": "user", "content": "one two three four five"}]
    r = client().chat.completions.create(model="echo", messages=messages, max_tokens=2)
    expect_eq(r.choices[0].finish_reason, "length", "finish_reason")
    expect_eq(r.choices[0].message.content, "one two ", "content")
    expect_eq(r.usage.completion_tokens, 2, "completion_tokens")
    expect_eq(r.usage.prompt_tokens, prompt_tokens(messages), "prompt_tokens")

    r = client().chat.completions.create(model="echo", messages=messages, max_completion_tokens=3)
    expect_eq(r.choices[0].finish_reason, "length", "finish_reason with max_completion_tokens")
    expect_eq(r.choices[0].message.content, "one two three ", "content with max_completion_tokens")


@case
def max_tokens_truncates_stream():
    stream = client().chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three four five"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    with_choices = [c for c in chunks if c.choices]
    expect_eq("".join(c.choices[0].delta.content or "" for c in with_choices), "one two three ", "joined deltas")
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    expect_eq(finishes, ["length"], "finish reasons in the stream")
    expect_eq(chunks[-1].usage.completion_tokens, 3, "completion_tokens")


@case
def wrong_key_is_rejected():
    bad = client(api_key="pw-not-a-real-key")
    e = expect_raises(openai.AuthenticationError, lambda: bad.models.list(), "GET /v1/models with a wrong key")
    expect_eq(e.status_code, 401, "status")
    expect_raises(
        openai.AuthenticationError,
        lambda: bad.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]),
        "POST /v1/chat/completions with a wrong key",
    )


@case
def unknown_model_is_not_found():
    e = expect_raises(
        openai.NotFoundError,
        lambda: client().chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        ),
        "chat with an unknown model",
    )
    expect_eq(e.status_code, 404, "status")
    expect_eq(e.code, "model_not_found", "error code")


@case
def bad_parameter_is_rejected():
    e = expect_raises(
        openai.BadRequestError,
        lambda: client().chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}], temperature=5
        ),
        "chat with temperature 5",
    )
    expect_eq(e.status_code, 400, "status")
    expect_eq(e.param, "temperature", "error param")
    expect_eq(e.type, "invalid_request_error", "error type")
    assert e.code, f"the error has no code: {e.body!r}"

    e = expect_raises(
        openai.BadRequestError,
        lambda: client().chat.completions.create(model="echo", messages=[]),
        "chat with no messages",
    )
    expect_eq(e.param, "messages", "error param")


def main():
    return run("openai-sdk", f"openai SDK {openai.__version__} against {BASE_URL}", BASE_URL, API_KEY)


if __name__ == "__main__":
    sys.exit(main())
