"""The value formats of the spec: the patterns that both the CRD (the API server) and pydantic
enforce, and the parsers the operator reads such values with.

Patterns are written in the regex subset RE2 (the API server's CEL and OpenAPI) and Python share.
"""

from __future__ import annotations

import datetime as dt
import re

# Durations in the Prometheus/Go style that CEL's duration() and Prometheus both accept.
RETENTION_PATTERN = r"^[0-9]+(ms|s|m|h|d|w|y)$"
GO_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
# A container resource name as the API server accepts one in a pod: a standard name, a huge page
# size (`hugepages-2Mi`), or an extended resource (a DNS-subdomain domain, '/', a label-like name,
# e.g. nvidia.com/gpu). `CPU`, `mem` or a trailing space would otherwise reach the StatefulSet, which
# the API server refuses, leaving the stack Degraded with a message about a child.
COMPUTE_RESOURCE_PATTERN = (r"^(cpu|memory|ephemeral-storage|hugepages-[0-9]+(k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?|"
                            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
                            r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
# A number of nothing in any unit (0d, 0s, 0Gi, 0.0, 0g): valid by the patterns above, but where a
# length of time, a size or a heap must be positive. Prometheus reads a zero retention or interval
# as unset and keeps its own default, so the spec would say 0 while the stack keeps 15 days.
ZERO_PATTERN = r"^[0.]+[a-zA-Z]*$"
# An https URL with a host and no whitespace or control character (an ASCII range, so RE2 and
# Python agree): a pasted space or line break went into Grafana's environment as part of the URL,
# and login failed at the provider with nothing on the resource saying why.
HTTPS_URL_PATTERN = r"^https://[^\x00-\x20\x7f/?#]+([/?#][^\x00-\x20\x7f]*)?$"
HTTPS_URL_MAX_LENGTH = 2048
# An OAuth client id is printable ASCII (RFC 6749, VSCHAR); no space at either end.
CLIENT_ID_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# RFC 1123 subdomain (what Kubernetes accepts as a host name in an Ingress rule).
HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# An API group: a DNS subdomain, or empty (for cert-manager, its own group).
API_GROUP_PATTERN = "^(" + HOSTNAME_PATTERN[1:-1] + ")?$"
# A key of a Secret or ConfigMap (what a volume's `items[].key` accepts).
OBJECT_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
# characters; and a label value. Written in the regex subset RE2 (the API server's CEL) and
# Python share.
LABEL_KEY_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# An OpenTelemetry resource-attribute key as OTEL_RESOURCE_ATTRIBUTES can carry it, and a value
# without the `,` that separates its entries.
ATTRIBUTE_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$"
ATTRIBUTE_VALUE_PATTERN = r"^[^,]*$"
# An OCI image reference: [registry[:port]/]path[:tag][@sha256:digest].
IMAGE_PATTERN = (r"^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?"
                 r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
                 r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
# Prometheus names: metrics (recording rules) and labels.
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
PROM_LABEL_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_QUANTITY_FACTORS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                     "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


# The resource's own name prefixes its children's. The longest is the Service
# `<name>-elasticsearch-headless` (a Service name is a DNS-1035 label: a letter first, at most 63),
# and a StatefulSet's pods carry `<statefulset>-<revision hash of up to 10>` in a 63-character
# label, so `<name>-elasticsearch` must stay within 52: 38 characters leave room for both. A
# longer or dotted name is a valid Kubernetes name whose stack the API server half refuses.
RESOURCE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
RESOURCE_NAME_MAX_LENGTH = 38


def resource_name_problem(name: str) -> str | None:
    """Why `name` cannot name an AgentObservability (its children could not be named), or None."""
    if len(name) > RESOURCE_NAME_MAX_LENGTH or not re.fullmatch(RESOURCE_NAME_PATTERN, name):
        return (f"metadata.name: must be at most {RESOURCE_NAME_MAX_LENGTH} characters of lower-case letters, "
                "digits and '-', starting with a letter: it prefixes the stack's Service and StatefulSet "
                "names; create the resource again under such a name")
    return None


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity of QUANTITY_PATTERN's form as a number (bytes for memory)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", text)
    if not match or match.group(2) not in _QUANTITY_FACTORS:
        raise ValueError(f"invalid quantity {text!r}")
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def heap_bytes(heap: str) -> int:
    """The JVM heap setting (`1g`, `512m`) in bytes."""
    return int(heap[:-1]) * (2**30 if heap.endswith("g") else 2**20)


def parse_go_duration(text: str) -> dt.timedelta:
    """Parse a Go duration such as `2160h` or `1h30m` (the spec's format for TLS lifetimes)."""
    if not text:
        raise ValueError("invalid duration ''")
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    seconds, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] in units else ch
        if unit not in units or not number:
            raise ValueError(f"invalid duration {text!r}")
        seconds += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"invalid duration {text!r}: missing unit")
    return dt.timedelta(seconds=seconds)


def format_go_duration(value: dt.timedelta) -> str:
    """A duration in whole seconds as Go writes it without zero parts (`720h`, `8h20m`, `45s`), the
    form cert-manager's `renewBefore` takes; fractions of a second are dropped."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts) or "0s"
