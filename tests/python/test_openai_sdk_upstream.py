"""The official OpenAI Python SDK against `pennyworth serve` with an OpenAI-compatible alias.

`tests/openai_sdk.rs` (test `openai_python_sdk_against_openai_upstream`) starts a local
OpenAI-compatible upstream on 127.0.0.1 (tests/support/openai_upstream.rs), points a
`provider: openai` alias at it with `base_url`, starts the gateway and runs this script with
PENNYWORTH_BASE_URL, PENNYWORTH_API_KEY, PENNYWORTH_MODEL and PENNYWORTH_EMBEDDING_MODEL.

The upstream answers a greeting; when tools are offered it calls the first one with
{"city": "Paris"}; when the last message is a tool result it quotes it back.
The chat cases are shared with the Bedrock script (openai_chat_cases.py).
"""

import os
import sys

import openai

import openai_chat_cases as chat
from cases import case, expect_eq, run

BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")
MODEL = os.environ.get("PENNYWORTH_MODEL", "gpt")
EMBEDDING_MODEL = os.environ.get("PENNYWORTH_EMBEDDING_MODEL", "embed")

chat.configure(BASE_URL, API_KEY, MODEL, greeting="Hello from upstream", usage=(11, 3), tool_call_id="call_up_1")


def client():
    return chat.client()


@case
def embeddings():
    # The SDK asks for base64 by default and decodes it; the gateway asks the upstream for
    # floats and encodes them.
    r = client().embeddings.create(model=EMBEDDING_MODEL, input=["ab", "c"])
    expect_eq(r.model, EMBEDDING_MODEL, "model")
    expect_eq(r.data[0].embedding, [2.0, 0.5, -0.25], "first vector")
    expect_eq(r.data[1].embedding, [1.0, 0.5, -0.25], "second vector")
    expect_eq(r.usage.prompt_tokens, 4, "prompt_tokens")


def main():
    return run("openai-sdk-upstream", f"openai SDK {openai.__version__} against {BASE_URL} (model {MODEL})", BASE_URL, API_KEY)


if __name__ == "__main__":
    sys.exit(main())
