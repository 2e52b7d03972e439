"""Helpers shared by the audit-trail tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_threads(work: Callable[[int], None], count: int) -> None:
    """Run work(0) .. work(count - 1) in threads started together; wait for all of them."""
    start = threading.Barrier(count)

    def run(t: int) -> None:
        start.wait()
        work(t)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "audit threads did not finish"
