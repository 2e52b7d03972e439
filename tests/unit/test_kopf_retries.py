"""kopf's API requests, with the settings the operator gives it, retry until the API server
answers. With kopf's defaults a request gave up after 9 attempts (about a minute), and when it was
the resource observer's the operator exited: an API server away for longer than that made the
operator crash-loop, though nothing was wrong with it."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf
import pytest
from kopf._cogs.clients import api

from agentobs import kopf_settings


class Refusing:
    """A kopf API context whose session is refused `failures` times, then answers."""

    server = "https://127.0.0.1:6443"

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0
        self.session = self

    async def request(self, **_: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise aiohttp.ClientConnectionError("Connect call failed")
        return type("Response", (), {"status": 200})()

    def add_response(self, response: Any) -> None:
        pass


def _request(settings: kopf.OperatorSettings, context: Refusing, waits: list[float]) -> Any:
    async def no_wait(delay: float) -> None:
        waits.append(delay)

    async def run() -> Any:
        return await api.request("GET", "/api", settings=settings, context=context,  # type: ignore[arg-type]
                                 logger=logging.getLogger("test"))

    original = api.asyncio.sleep
    api.asyncio.sleep = no_wait  # type: ignore[assignment]
    try:
        return asyncio.run(run())
    finally:
        api.asyncio.sleep = original


def test_kopf_requests_retry_until_the_api_server_answers() -> None:
    settings = kopf.OperatorSettings()
    kopf_settings.configure(settings)
    waits: list[float] = []
    context = Refusing(failures=40)  # 40 refusals: about 20 minutes away
    assert _request(settings, context, waits).status == 200
    assert context.calls == 41
    assert waits[:9] == [1, 1, 2, 3, 5, 8, 13, 21, 30] and set(waits[8:]) == {30}
    # Each request starts its backoffs afresh (the settings are shared by every request).
    waits.clear()
    assert _request(settings, Refusing(failures=2), waits).status == 200 and waits == [1, 1]


def test_kopf_defaults_gave_up() -> None:
    """What the operator used to run with (kept to show the difference it makes)."""
    with pytest.raises(aiohttp.ClientConnectionError):
        _request(kopf.OperatorSettings(), Refusing(failures=40), [])
