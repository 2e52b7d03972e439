"""The kopf settings the operator runs with."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import kopf

# kopf's own backoffs (about a minute in all), then every 30 s.
_FIRST_BACKOFFS = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
LAST_BACKOFF = 30.0


class EndlessBackoffs:
    """kopf retries a failed API request once per backoff it is given, then raises. Its resource
    observer (the scan of the API groups at start, and again when a CRD changes) does not survive
    that: with the API server away for more than a minute, the operator exited (status 1), and its
    pod restarted in a loop until the server was back. Iterated afresh for each request, and with
    no length, so kopf retries until the server answers."""

    def __iter__(self) -> Iterator[float]:
        return itertools.chain(_FIRST_BACKOFFS, itertools.repeat(LAST_BACKOFF))


def configure(settings: kopf.OperatorSettings) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270
    settings.networking.request_timeout = 60
    settings.networking.error_backoffs = EndlessBackoffs()
