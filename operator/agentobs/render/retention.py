"""Retention of spans, logs and audit records: index lifecycle policies put by a CronJob.

Why a CronJob of our own, and not Jaeger's index cleaner: the logs and audit indices need a
lifecycle as well, and one mechanism for all three is one thing to understand and to check. Why
index lifecycle management (ILM) with delete-only policies: every family is written to daily
indices, and a delete phase with `min_age: <days>d` removes an index that many days after it was
created, inside Elasticsearch, whether or not our job runs that day.

Why periodically and not a one-off Job: a policy takes effect on an index through the
`index.lifecycle.name` setting. For logs and audit our own index templates carry it, so new
indices get it at creation. Jaeger's span indices are created from Jaeger's own template, which
Jaeger rewrites when it starts; a second template cannot add a setting to it (only the composable
template of highest priority applies), and copying Jaeger's mappings into ours would be a fork of
them. So each run also sets the policy on every existing index of the three families, which
catches the indices created since the last run. Every request is a PUT of a whole document:
running it again changes nothing, and a missed run costs nothing. Daily, because the indices are
daily and a delete phase counts from an index's creation, not from when it got its policy; an
hourly run would start 24 times the Jobs and pods (1,000 an hour for 1,000 stacks) for nothing.

Before the first document: a Job runs the same script as soon as the resource exists, and again
whenever what it puts changes (its name carries a hash of the script's files, so a retention
change is a new Job; the old one is pruned). The logs and audit templates are put before the
policies, and each policy's `_meta.templates` carries a hash of the templates: the Fluentd
aggregator's init container waits until the policies carry the hash of the templates it expects
(`templates_hash`), so no log or audit index is ever created by dynamic mapping. Should the Job
fail (Elasticsearch not up within its retries), the operator deletes it ten minutes later and the
next pass runs it again (`agentobs.stack.reconcile.JOB_RERUN_AFTER`), until it puts the documents
and releases the wait.

The job uses the Elasticsearch image (for its curl) with the `retention` user of the provisioned
cluster (see `elasticsearch.make_roles`), or the external cluster's credentials. The CronJob's
job template carries no owner label on purpose: the Jobs it spawns belong to the CronJob, and
the operator's pruning must not mistake them for stray children.

Pure: `render(owner, material)` returns the manifests.
"""

from __future__ import annotations

import json
from typing import Any

from agentobs.api.spec import ResourceRequirements
from agentobs.render import egress, es_access
from agentobs.render.addresses import elasticsearch_url
from agentobs.render.common import (
    OWNER_LABEL,
    CredentialRequest,
    Manifest,
    Material,
    Owner,
    container_security_context,
    content_hash,
    metadata,
    pod_security_context,
    resources,
)

COMPONENT = "es-retention"
SCRIPT_DIR = "/etc/agentobs-retention"
CA_DIR = "/etc/agentobs-retention-ca"
UID = 1000  # the elasticsearch image's user
RESOURCES = ResourceRequirements(requests={"cpu": "10m", "memory": "32Mi"}, limits={"memory": "64Mi"})
# Above Elasticsearch's built-in templates (priority 100 for logs-*-*), though the patterns differ.
TEMPLATE_PRIORITY = 200

APPLY_SCRIPT = r"""#!/bin/bash
# Puts the lifecycle policies and index templates of one AgentObservability and attaches the
# policies to the indices that exist. Idempotent: every request PUTs a whole document.
set -euo pipefail
cd "$(dirname "$0")"
quote() { local s=${1//\\/\\\\}; printf '%s' "${s//\"/\\\"}"; }
cacert=()
if [ -n "${ES_CA_FILE:-}" ]; then cacert=(--cacert "$ES_CA_FILE"); fi
put() {  # path body-file; the credentials reach curl on stdin, never in its argv
  local code
  code=$(printf 'user = "%s:%s"\n' "$(quote "$ES_USERNAME")" "$(quote "$ES_PASSWORD")" |
    curl -sS -K - "${cacert[@]}" -X PUT -H 'Content-Type: application/json' \
      --data-binary "@$2" -o /dev/stderr -w '%{http_code}' "$ES_URL/$1")
  echo " <- PUT $1: $code" >&2
  [ "$code" -ge 200 ] && [ "$code" -lt 300 ]
}
while read -r family policy pattern; do
  # The template first: its policy's _meta.templates is what the aggregator waits for.
  if [ -f "template-$family.json" ]; then put "_index_template/$policy" "template-$family.json"; fi
  put "_ilm/policy/$policy" "policy-$family.json"
  put "$pattern/_settings?allow_no_indices=true" "attach-$family.json"
done < families
"""


WAIT_SCRIPT = r"""set -eu
cacert=""
if [ -n "${ES_CA_FILE:-}" ]; then cacert="--cacert $ES_CA_FILE"; fi
quote() { local s=${1//\\/\\\\}; printf '%s' "${s//\"/\\\"}"; }
for policy in $POLICIES; do
  # The credentials reach curl on stdin, never in its argv.
  until printf 'user = "%s:%s"\n' "$(quote "$ES_USERNAME")" "$(quote "$ES_PASSWORD")" |
      curl -sS -K - $cacert "$ES_URL/_ilm/policy/$policy" 2>/dev/null | grep -q "\"templates\":\"$TEMPLATES\""; do
    echo "waiting for the index templates and lifecycle policy $policy (the es-setup Job puts them)"
    sleep 5
  done
done
"""


def _days(owner: Owner) -> dict[str, int]:
    spec = owner.spec
    return {"traces": spec.tracing.retention_days, "logs": spec.logging.retention_days,
            "audit": spec.audit.retention_days}


def _patterns(owner: Owner) -> dict[str, str]:
    return {"traces": es_access.jaeger_index_pattern(owner), "logs": es_access.logs_index_pattern(owner),
            "audit": es_access.audit_index_pattern(owner)}


def policy_name(owner: Owner, family: str) -> str:
    return f"{es_access.index_base(owner)}_{family}"


def make_policy(owner: Owner, family: str) -> dict[str, Any]:
    return {"policy": {
        "_meta": {"managed_by": "agentobs", "resource": f"{owner.namespace}/{owner.name}",
                  "templates": templates_hash(owner)},
        "phases": {"hot": {"min_age": "0ms", "actions": {}},
                   "delete": {"min_age": f"{_days(owner)[family]}d", "actions": {"delete": {}}}},
    }}


AGENT_FAMILIES = ("logs", "audit")  # the families Fluentd writes, whose templates it waits for


def make_template(owner: Owner, family: str) -> dict[str, Any]:
    """Template of the indices Fluentd writes: the policy, keyword ids for exact lookups, and pod
    labels as one `flattened` field each, so that label keys (de-dotted by the collector, but any
    key at all here) never become mappings that can conflict."""
    fields: dict[str, Any] = {"@timestamp": {"type": "date"}, "trace_id": {"type": "keyword"},
                              "span_id": {"type": "keyword"}, "level": {"type": "keyword"},
                              "logger": {"type": "keyword"}, "agent_id": {"type": "keyword"},
                              "message": {"type": "text"}, "stream": {"type": "keyword"},
                              "file": {"type": "keyword"}, "offset": {"type": "long"},
                              "time": {"type": "keyword"},  # the runtime's own timestamp, in ns, as read
                              "kubernetes": {"properties": {
                                  "namespace_name": {"type": "keyword"}, "pod_name": {"type": "keyword"},
                                  "container_name": {"type": "keyword"}, "pod_id": {"type": "keyword"},
                                  "host": {"type": "keyword"}, "labels": {"type": "flattened"}}}}
    if family == "audit":
        fields |= {"action": {"type": "keyword"}, "user": {"type": "keyword"}, "result": {"type": "keyword"},
                   "seq": {"type": "long"}, "hash": {"type": "keyword"}, "prev": {"type": "keyword"}}
    return {
        "index_patterns": [_patterns(owner)[family]],
        "priority": TEMPLATE_PRIORITY,
        "_meta": {"managed_by": "agentobs", "resource": f"{owner.namespace}/{owner.name}"},
        "template": {"settings": {"index.lifecycle.name": policy_name(owner, family),
                                  "index.number_of_shards": 1},
                     "mappings": {"properties": fields}},
    }


def templates_hash(owner: Owner) -> str:
    """What the aggregator's init container waits to find in the logs and audit policies."""
    return content_hash(*(make_template(owner, family) for family in AGENT_FAMILIES))


def make_configmap(owner: Owner) -> Manifest:
    data = {"apply.sh": APPLY_SCRIPT}
    lines = []
    for family, pattern in _patterns(owner).items():
        name = policy_name(owner, family)
        lines.append(f"{family} {name} {pattern}")
        data[f"policy-{family}.json"] = json.dumps(make_policy(owner, family), indent=2, sort_keys=True)
        data[f"attach-{family}.json"] = json.dumps({"index.lifecycle.name": name})
        if family != "traces":  # Jaeger puts the templates of its own indices
            data[f"template-{family}.json"] = json.dumps(make_template(owner, family), indent=2, sort_keys=True)
    data["families"] = "\n".join(lines) + "\n"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(owner, COMPONENT), "data": data}


def schedule(owner: Owner) -> str:
    """Daily, at an hour and minute derived from the resource's uid, so that many resources do not
    run at once: 1,000 stacks start about one Job a minute and a half, not 1,000 at the hour."""
    spread = int(content_hash(owner.uid), 16)
    return f"{spread % 60} {spread // 60 % 24} * * *"


def _pod_template(owner: Owner) -> dict[str, Any]:
    """The pod of the set-up Job and of the CronJob's runs: the same script on the same files."""
    name = owner.child_name(COMPONENT)
    env: list[dict[str, Any]] = [{"name": "ES_URL", "value": elasticsearch_url(owner)},
                                 *es_access.credential_env(owner, "retention", "ES_USERNAME", "ES_PASSWORD")]
    mounts = [{"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "script", "configMap": {"name": name, "defaultMode": 0o555}}]
    ca = es_access.ca_volume(owner, "es-ca")
    if ca is not None:
        env.append({"name": "ES_CA_FILE", "value": f"{CA_DIR}/{es_access.CA_FILE}"})
        mounts.append({"name": "es-ca", "mountPath": CA_DIR, "readOnly": True})
        volumes.append(ca)
    container = {
        "name": "apply",
        "image": owner.spec.images.elasticsearch,
        "command": ["bash", f"{SCRIPT_DIR}/apply.sh"],
        "env": env,
        "resources": resources(RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    return {
        "metadata": {"labels": _pod_labels(owner)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(UID),
            "containers": [container],
            "volumes": volumes,
        },
    }


def _pod_labels(owner: Owner) -> dict[str, str]:
    return {k: v for k, v in metadata(owner, COMPONENT)["labels"].items() if k != OWNER_LABEL}


def make_cronjob(owner: Owner) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "schedule": schedule(owner),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 1800,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": _pod_labels(owner)},
                "spec": {"backoffLimit": 3, "activeDeadlineSeconds": 600, "template": _pod_template(owner)},
            },
        },
    }


def setup_job_name(owner: Owner, configmap: Manifest) -> str:
    """Named after everything the run depends on: the files, and the pod (the cluster's URL,
    credentials and CA), since a Job's pod template cannot change in place."""
    return owner.child_name(f"es-setup-{content_hash(configmap['data'], _pod_template(owner))[:10]}")


def make_setup_job(owner: Owner, configmap: Manifest) -> Manifest:
    """Runs the script once for what the ConfigMap holds now; a new name for new contents or a new
    pod. Its retries cover an Elasticsearch still forming (back-off from 10 s, doubling to 6 min:
    about 40 minutes over 12 tries)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, COMPONENT, setup_job_name(owner, configmap)),
        "spec": {"backoffLimit": 12, "template": _pod_template(owner)},
    }


def make_wait_container(owner: Owner, client: str, ca_volume: str, ca_dir: str) -> dict[str, Any]:
    """An init container that waits until the logs and audit policies carry `templates_hash`:
    the writer it precedes never creates an index before its template exists. It authenticates as
    `client` (which needs `read_ilm`) and expects the CA volume `ca_volume` mounted by the pod."""
    env: list[dict[str, Any]] = [
        {"name": "ES_URL", "value": elasticsearch_url(owner)},
        {"name": "POLICIES", "value": " ".join(policy_name(owner, f) for f in AGENT_FAMILIES)},
        {"name": "TEMPLATES", "value": templates_hash(owner)},
        *es_access.credential_env(owner, client, "ES_USERNAME", "ES_PASSWORD"),
    ]
    mounts = []
    if es_access.ca_volume(owner, ca_volume) is not None:
        env.append({"name": "ES_CA_FILE", "value": f"{ca_dir}/{es_access.CA_FILE}"})
        mounts.append({"name": ca_volume, "mountPath": ca_dir, "readOnly": True})
    return {
        "name": "wait-for-index-setup",
        "image": owner.spec.images.elasticsearch,  # for its bash and curl, like the jobs
        "command": ["bash", "-c", WAIT_SCRIPT],
        "env": env,
        "resources": resources(RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }


def make_network_policy(owner: Owner) -> Manifest:
    """Nothing connects to the job's pods; they reach only Elasticsearch."""
    return egress.policy(owner, COMPONENT, None, [egress.dns(), egress.elasticsearch(owner)])


def certificates(owner: Owner) -> dict[str, list[str]]:
    return {}


def credentials(owner: Owner) -> list[CredentialRequest]:
    return []  # the `retention` user is one of the provisioned cluster's users


def endpoints(owner: Owner) -> dict[str, str]:
    return {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not es_access.in_use(owner):
        return []
    configmap = make_configmap(owner)
    return [configmap, make_setup_job(owner, configmap), make_cronjob(owner), make_network_policy(owner)]
