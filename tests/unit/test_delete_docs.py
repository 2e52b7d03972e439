"""What a platform engineer reads before deleting a stack's namespace: `keepOnDelete` keeps the
volumes only when the resource alone is deleted. Deleting the namespace deletes the claims (and
the retained Secrets, the audit key among them), and a StorageClass reclaim policy of `Delete`, the
usual default, deletes the data with them; `kubectl explain` and the operations guide say so."""
from __future__ import annotations

from agentobs.api.crd import make_crd

from cluster_support import ROOT


def _keep_on_delete() -> str:
    schema = make_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return str(schema["prometheus"]["properties"]["storage"]["properties"]["keepOnDelete"]["description"])


def test_explain_says_a_deleted_namespace_takes_the_volumes() -> None:
    text = _keep_on_delete()
    assert "namespace" in text and "reclaim policy" in text


def test_operations_guide_says_what_deleting_the_namespace_takes() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("## What deleting a stack keeps", 1)[1].split("\n## ", 1)[0]
    assert "Deleting the namespace" in section and "reclaimPolicy" in section and "audit-key" in section
