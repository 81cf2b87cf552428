"""The official OpenAI Python SDK against `pennyworth serve` with a Bedrock alias.

`tests/openai_sdk.rs` (test `openai_python_sdk_against_bedrock`) starts the Bedrock test
server on 127.0.0.1, points the alias at it with `endpoint_url` in models.yaml, starts the
gateway and runs this script with PENNYWORTH_BASE_URL, PENNYWORTH_API_KEY and PENNYWORTH_MODEL.

The test server answers a greeting; when tools are offered it calls the first one with each
required argument set to "Paris"; when the last turn holds tool results it quotes them back.
The chat cases are shared with the OpenAI-compatible script (openai_chat_cases.py).
Every case runs; the script prints one line per case and a summary, and exits 1 on a failure.
"""

import os
import sys

import openai

import openai_chat_cases as chat
from cases import case, expect_eq, run

BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")
MODEL = os.environ.get("PENNYWORTH_MODEL", "claude")
EMBEDDING_MODEL = os.environ.get("PENNYWORTH_EMBEDDING_MODEL", "titan")

chat.configure(BASE_URL, API_KEY, MODEL, greeting="Hello from Bedrock", usage=(12, 5), tool_call_id="tooluse_test_1")


def client():
    return chat.client()


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
