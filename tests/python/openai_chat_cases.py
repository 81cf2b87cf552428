"""The chat cases both OpenAI SDK scripts run against `pennyworth serve`, whatever provider
is behind the alias: listing, buffered and streamed chat, a tool-calling round trip, streamed
tool calls and legacy completions.

A script sets what its test upstream answers, then imports this module (which registers the
cases with `cases.case`):

    import openai_chat_cases as chat
    chat.configure(model="gpt", greeting="Hello from upstream", usage=(11, 3), tool_call_id="call_up_1")

The upstream answers a greeting; when tools are offered it calls the first one with
{"city": "Paris"}; when the last turn holds a tool result it quotes it back.
"""

import json

import openai

from cases import case, expect_eq

BASE_URL = ""
API_KEY = ""
MODEL = ""
GREETING = ""
USAGE = (0, 0)
TOOL_CALL_ID = ""


def configure(base_url, api_key, model, greeting, usage, tool_call_id):
    """What the script's upstream answers: its greeting text, (prompt, completion) tokens of a
    greeting, and the id of its first tool call."""
    global BASE_URL, API_KEY, MODEL, GREETING, USAGE, TOOL_CALL_ID
    BASE_URL, API_KEY, MODEL = base_url, api_key, model
    GREETING, USAGE, TOOL_CALL_ID = greeting, usage, tool_call_id


def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30.0)


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
    expect_eq(r.choices[0].message.content, GREETING, "content")
    expect_eq(r.choices[0].finish_reason, "stop", "finish_reason")
    expect_eq(r.usage.prompt_tokens, USAGE[0], "prompt_tokens")
    expect_eq(r.usage.completion_tokens, USAGE[1], "completion_tokens")
    expect_eq(r.usage.total_tokens, USAGE[0] + USAGE[1], "total_tokens")


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
    expect_eq(text, GREETING, "joined deltas")
    assert len([c for c in body if c.choices[0].delta.content]) >= 3, "one chunk per upstream delta"
    expect_eq(body[-1].choices[0].finish_reason, "stop", "finish_reason")
    expect_eq(last.choices, [], "usage chunk has no choices")
    expect_eq(last.usage.prompt_tokens, USAGE[0], "prompt_tokens")


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
    expect_eq(deltas[0].id, TOOL_CALL_ID, "id in the first delta")
    expect_eq(deltas[0].function.name, "get_weather", "name in the first delta")
    args = "".join(d.function.arguments or "" for d in deltas)
    expect_eq(json.loads(args), {"city": "Paris"}, "joined arguments")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expect_eq(finishes, ["tool_calls"], "finish reasons")


@case
def legacy_completions():
    r = client().completions.create(model=MODEL, prompt="Say hi", max_tokens=20)
    expect_eq(r.object, "text_completion", "object")
    expect_eq(r.choices[0].text, GREETING, "text")
    expect_eq(r.choices[0].finish_reason, "stop", "finish_reason")
    chunks = list(client().completions.create(model=MODEL, prompt="Say hi", stream=True))
    expect_eq("".join(c.choices[0].text for c in chunks if c.choices), GREETING, "streamed text")
