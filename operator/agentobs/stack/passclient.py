"""The client of one reconcile pass (or one log collector sync): reads from the watch-fed caches of
`agentobs.stack.cache`, and applies only what they do not hold as rendered."""

from __future__ import annotations

from agentobs import metrics
from agentobs.kube import FIELD_MANAGER, Kube, Manifest
from agentobs.stack.cache import Cache, Key, key_of
from agentobs.stack.cache_entry import Entry


class PassClient(Kube):
    """The client of one reconcile pass: cached reads, and applies only of what is not in place.
    `written` lists what the pass wrote ("Kind name"), for its one log line."""

    def __init__(self, kube: Kube, cache: Cache | None) -> None:
        self._api = kube._api
        self._cache = cache
        self.written: list[str] = []
        self.skipped = 0

    def read(self, api_version: str, kind: str, namespace: str | None, name: str) -> Manifest | None:
        """The whole object from the API server (the caches keep only part of it)."""
        return super().get(api_version, kind, namespace, name)

    def cached_version(self, api_version: str, kind: str, namespace: str, name: str) -> str | None:
        """The object's resourceVersion in the caches; None when they do not hold it."""
        if self._cache is None:
            return None
        _, cached = self._cache.peek(api_version, kind, namespace, name)
        return cached.version if cached is not None else None

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Manifest | None:
        if self._cache is not None:
            _, cached = self._cache.peek(api_version, kind, namespace or "", name)
            if cached is not None:
                return cached.manifest()
        return super().get(api_version, kind, namespace, name)

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str = "") -> list[Manifest]:
        cached = self._cache.list(api_version, kind, namespace, label_selector) if self._cache else None
        return cached if cached is not None else super().list(api_version, kind, namespace, label_selector)

    def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER, dry_run: bool = False) -> Manifest:
        if dry_run or field_manager != FIELD_MANAGER or self._cache is None:
            return super().apply(manifest, field_manager, dry_run)
        key = key_of(manifest)
        live = self._live(key)
        if self._cache.in_place(manifest, live):
            assert live is not None
            self.skipped += 1
            metrics.SKIPPED_APPLIES.labels(kind=key[1]).inc()
            return live.manifest()
        result = super().apply(manifest)
        self.written.append(f"{key[1]} {key[3]}")
        return self._cache.remember(key, result).manifest()

    def in_place(self, manifest: Manifest) -> bool:
        """Whether `apply` would send nothing for `manifest` (never, without caches)."""
        return self._cache is not None and self._cache.in_place(manifest, self._live(key_of(manifest)))

    def _live(self, key: Key) -> Entry | None:
        assert self._cache is not None
        covered, live = self._cache.peek(*key)
        if not covered:  # no cache here (e.g. a namespace outside the operator's): one read instead
            found = super().get(*key[:2], key[2] or None, key[3])
            live = Entry(found) if found is not None else None
        return live
