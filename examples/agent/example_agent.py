"""An example agent for the real-node tests and for reading: a loop of runs, each asking a fake
LLM what to do, calling two tools (one of which fails now and then), and deciding.

It uses only what the agentobs webhook injects: `configure()` reads the OTLP endpoint, CA bundle,
metrics port and audit directory from the environment. The LLM is simulated in-process (no model
and no network), with token counts that grow with the prompt, so the stack's GenAI metrics and
spans carry realistic shapes.

  EXAMPLE_AGENT_RUNS      runs before exiting (default 0: forever)
  EXAMPLE_AGENT_INTERVAL  seconds between runs (default 2)
"""

from __future__ import annotations

import logging
import os
import random
import time

import agentobs_sdk as aobs

log = logging.getLogger("example_agent")


def fake_llm(prompt: str, rng: random.Random) -> tuple[str, int, int]:
    """What a chat model would answer: the next tool to use, with input and output token counts."""
    tool = rng.choice(["search", "calculator"])
    return tool, 40 + len(prompt) // 4, rng.randint(8, 64)


def search(query: str) -> list[str]:
    return [f"result {i} for {query}" for i in range(3)]


def calculator(expression: str, rng: random.Random) -> float:
    if rng.random() < 0.2:
        raise ArithmeticError("division by zero in " + expression)
    return float(len(expression))


def one_run(number: int, rng: random.Random) -> None:
    with aobs.agent_run("example-agent"):
        prompt = f"task {number}: find and compute"
        with aobs.llm_call("fake-model-1", provider="fake") as call:
            tool, tokens_in, tokens_out = fake_llm(prompt, rng)
            call.record_usage(input_tokens=tokens_in, output_tokens=tokens_out)
        with aobs.decision("next_tool", choice=tool, confidence=0.5 + rng.random() / 2,
                           alternatives=["search", "calculator"]):
            pass
        with aobs.tool_call("search"):
            hits = search(prompt)
        try:
            with aobs.tool_call("calculator"):
                calculator(hits[0], rng)
        except ArithmeticError:
            log.warning("calculator failed; answering without it")
        log.info("run %d done", number)


def main() -> int:
    # configure() sets up JSON logs carrying trace and span ids; nothing else to configure.
    handle = aobs.configure()
    log.setLevel(logging.INFO)
    runs = int(os.environ.get("EXAMPLE_AGENT_RUNS", "0"))
    interval = float(os.environ.get("EXAMPLE_AGENT_INTERVAL", "2"))
    rng = random.Random(os.environ.get("HOSTNAME", "agent"))
    number = 0
    try:
        while runs == 0 or number < runs:
            number += 1
            one_run(number, rng)
            time.sleep(interval)
    finally:
        handle.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
