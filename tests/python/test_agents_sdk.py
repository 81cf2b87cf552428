"""The OpenAI Agents SDK (Responses mode) against `pennyworth serve` with a Bedrock alias.

`tests/responses_sdk.rs` runs this script with PENNYWORTH_BASE_URL, PENNYWORTH_API_KEY and
PENNYWORTH_MODEL. The Bedrock test server calls the agent's function tool with "Paris", then
quotes the tool's result, which must come back as the agent's final output.
"""

import os
import sys

from openai import AsyncOpenAI

from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)

BASE_URL = os.environ.get("PENNYWORTH_BASE_URL", "")
API_KEY = os.environ.get("PENNYWORTH_API_KEY", "")
MODEL = os.environ.get("PENNYWORTH_MODEL", "claude")

CALLS = []


@function_tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    CALLS.append(city)
    return f"weather in {city}: 19C"


def main():
    if not BASE_URL or not API_KEY:
        print("error: set PENNYWORTH_BASE_URL and PENNYWORTH_API_KEY", file=sys.stderr)
        return 2
    client = AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=30.0)
    set_default_openai_client(client, use_for_tracing=False)
    set_tracing_disabled(True)
    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
    )
    result = Runner.run_sync(agent, "Weather in Paris?")
    assert CALLS == ["Paris"], f"tool calls: {CALLS}"
    assert result.final_output == "The tool said: weather in Paris: 19C", result.final_output
    print(f"ok   agent_with_function_tool: {result.final_output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
