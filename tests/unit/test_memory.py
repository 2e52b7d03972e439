"""Returning freed memory after a burst of passes (agentobs.memory), and when it is due."""

from __future__ import annotations

import ctypes.util
import gc

import pytest

from agentobs import memory
from agentobs.workqueue import WorkQueue


def test_a_trim_is_due_only_after_a_burst_when_idle_and_not_too_often() -> None:
    calls: list[int] = []
    trimmer = memory.Trimmer(lambda: calls.append(1))
    for _ in range(memory.TRIM_AFTER_PASSES - 1):
        trimmer.passed()
    assert not trimmer.due(True, 100.0), "a few passes are no burst"
    trimmer.passed()
    assert not trimmer.due(False, 100.0), "never while passes are queued or running"
    assert trimmer.due(True, 100.0)
    trimmer.trim(100.0)
    assert calls == [1] and trimmer.passes == 0
    for _ in range(memory.TRIM_AFTER_PASSES):
        trimmer.passed()
    assert not trimmer.due(True, 100.0 + memory.TRIM_INTERVAL - 1), "at most once a minute"
    assert trimmer.due(True, 100.0 + memory.TRIM_INTERVAL)


def test_without_glibc_nothing_is_ever_due(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc", lambda: None)
    trimmer = memory.Trimmer()
    for _ in range(memory.TRIM_AFTER_PASSES):
        trimmer.passed()
    assert not trimmer.due(True, 1e9)
    memory.limit_arenas()  # and no error


async def test_the_queue_is_busy_while_a_key_waits_or_runs() -> None:
    queue: WorkQueue[str] = WorkQueue()
    assert not queue.busy
    queue.add("a", 0)
    assert queue.busy
    key = await queue.get()
    assert queue.busy, "running"
    queue.done(key)
    assert not queue.busy


@pytest.mark.skipif(ctypes.util.find_library("c") is None or memory._libc() is None, reason="needs glibc")
def test_a_trim_hands_back_what_a_burst_freed() -> None:
    """What a burst leaves behind, kept alive sparsely (a cache entry here and there), pins whole
    stretches of the heap; glibc returns the free pages between them only when asked."""
    burst = ["x" * 1500 + str(i) for i in range(60_000)]  # ~90 MiB from malloc (larger than pymalloc serves)
    kept = burst[::64]
    del burst
    gc.collect()
    before = memory._resident_kib()
    returned = memory.Trimmer().trim(0.0)
    assert returned > 40 * 1024, f"only {returned} KiB of {before} KiB returned"
    assert len(kept) == 938


def test_the_promql_parser_is_loaded_only_by_a_stack_with_extra_rules() -> None:
    """Its native library is 1.5 MiB resident in every operator process that imports it."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from agentobs import main\n"
             "from agentobs.render.common import Owner\n"
             "from agentobs.render.rules import extra_rule_problems\n"
             "from agentobs.api.spec import AgentObservabilitySpec\n"
             "plain = Owner('s', 'n', 'u', AgentObservabilitySpec.model_validate({}))\n"
             "assert extra_rule_problems(plain) == {}\n"
             "print('promql_parser' in sys.modules)\n"
             "rules = {'prometheus': {'extraRules': [{'name': 'g', 'rules': [{'alert': 'A', 'expr': 'up =='}]}]}}\n"
             "print(extra_rule_problems(Owner('s', 'n', 'u', AgentObservabilitySpec.model_validate(rules))))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "False"
    assert "does not parse" in out[1]
