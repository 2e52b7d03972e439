"""How the stack's clients use Elasticsearch: whose credentials, which CA, which index names.

Jaeger, Fluentd, Grafana and the retention job all write to or read from one Elasticsearch: the
one the operator provisions, or `spec.elasticsearch.external`. This module is the one place that
says, for either case, which Secret holds a client's `username`/`password`, where the CA that
signs the cluster's certificate comes from, and how indices are named, so that the writers, the
readers and the retention that deletes old data can never disagree. (The URL itself comes from
`addresses.elasticsearch_url`.)

Index names. Every index of one resource starts with `agentobs_<namespace>_<name>`; `_` cannot
occur in a Kubernetes name, so the patterns of two resources sharing an external cluster never
overlap (with `-` a resource `demo` would match the indices of a resource `demo-logs`):

    <base>_traces-jaeger-span-YYYY-MM-DD   Jaeger (its index prefix is <base>_traces)
    <base>_traces-jaeger-service-...       Jaeger
    <base>_logs-YYYY.MM.DD                 Fluentd, agent log lines
    <base>_audit-YYYY.MM.DD                Fluentd, agent audit records

Pure: functions of the owner only.
"""

from __future__ import annotations

from typing import Any

from agentobs.render.common import Owner
from agentobs.render.tls import CA_BUNDLE_KEY, ca_bundle_name

# Users the provisioned cluster gets, one per client, each with only the privileges it needs.
CLIENTS = ("jaeger", "fluentd", "grafana", "retention")
USERNAME_KEY = "username"
PASSWORD_KEY = "password"  # noqa: S105 (the name of a Secret key)
BCRYPT_KEY = "password.bcrypt"
CA_FILE = CA_BUNDLE_KEY


def in_use(owner: Owner) -> bool:
    """Whether the stack has a store (`AgentObservabilitySpec.store_in_use`): without one there is
    no Elasticsearch, retention job, Elasticsearch datasource or egress to it."""
    return owner.spec.store_in_use


def credentials_suffix(client: str) -> str:
    """Suffix of the generated Secret `<resource>-elasticsearch-<client>` (provisioned cluster)."""
    return f"elasticsearch-{client}"


def credentials_secret(owner: Owner, client: str) -> str:
    """The Secret with `username` and `password` that `client` authenticates with."""
    external = owner.spec.elasticsearch.external
    return external.credentials_secret if external else owner.child_name(credentials_suffix(client))


def credential_env(owner: Owner, client: str, username_var: str, password_var: str) -> list[dict[str, Any]]:
    """Container env that carries a client's credentials from their Secret (never inline)."""
    secret = credentials_secret(owner, client)
    return [
        {"name": username_var, "valueFrom": {"secretKeyRef": {"name": secret, "key": USERNAME_KEY}}},
        {"name": password_var, "valueFrom": {"secretKeyRef": {"name": secret, "key": PASSWORD_KEY}}},
    ]


def ca_volume(owner: Owner, volume_name: str) -> dict[str, Any] | None:
    """A volume with `ca.crt` trusted for the cluster's certificate; None means the system roots
    (an external cluster given without `caSecret`)."""
    items = [{"key": CA_BUNDLE_KEY, "path": CA_FILE}]
    external = owner.spec.elasticsearch.external
    if external is None:
        return {"name": volume_name, "configMap": {"name": ca_bundle_name(owner), "items": items}}
    if external.ca_secret:
        return {"name": volume_name, "secret": {"secretName": external.ca_secret, "items": items}}
    return None


def index_base(owner: Owner) -> str:
    return f"agentobs_{owner.namespace}_{owner.name}"


def jaeger_index_prefix(owner: Owner) -> str:
    """Jaeger's `index_prefix`; Jaeger appends `-jaeger-span-<date>` and the like."""
    return f"{index_base(owner)}_traces"


def jaeger_index_pattern(owner: Owner) -> str:
    """Every index Jaeger writes (spans, services, dependencies, sampling)."""
    return f"{jaeger_index_prefix(owner)}-jaeger-*"


def span_index_pattern(owner: Owner) -> str:
    return f"{jaeger_index_prefix(owner)}-jaeger-span-*"


def logs_index_prefix(owner: Owner) -> str:
    return f"{index_base(owner)}_logs"


def logs_index_pattern(owner: Owner) -> str:
    return f"{logs_index_prefix(owner)}-*"


def audit_index_prefix(owner: Owner) -> str:
    return f"{index_base(owner)}_audit"


def audit_index_pattern(owner: Owner) -> str:
    return f"{audit_index_prefix(owner)}-*"
