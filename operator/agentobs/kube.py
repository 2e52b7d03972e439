"""The one layer that talks to the Kubernetes API server.

Everything else in the operator works on plain manifests (dicts). This module turns them into
requests: server-side apply with a fixed field manager, reads, status patches and events. It
speaks the REST paths directly from a table of the kinds the operator manages, so no discovery
round-trips happen on the reconcile path. Errors come out as `KubeError`, whose message is the API
server's own `Status.message` and never includes a request body, so a Secret's data cannot leak
into a log, an event or a status condition through an exception.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import os
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3
import urllib3.util.ssl_
from kubernetes.client.exceptions import ApiException

from agentobs import metrics

FIELD_MANAGER = "agentobs-operator"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class KindInfo:
    plural: str
    namespaced: bool


# Every kind the operator renders or reads, so a path is built without discovery.
KINDS: dict[tuple[str, str], KindInfo] = {
    ("v1", "ConfigMap"): KindInfo("configmaps", True),
    ("v1", "Secret"): KindInfo("secrets", True),
    ("v1", "Service"): KindInfo("services", True),
    ("v1", "ServiceAccount"): KindInfo("serviceaccounts", True),
    ("v1", "Pod"): KindInfo("pods", True),
    ("v1", "PersistentVolumeClaim"): KindInfo("persistentvolumeclaims", True),
    ("v1", "Namespace"): KindInfo("namespaces", False),
    ("v1", "Event"): KindInfo("events", True),
    ("apps/v1", "StatefulSet"): KindInfo("statefulsets", True),
    ("apps/v1", "Deployment"): KindInfo("deployments", True),
    ("apps/v1", "DaemonSet"): KindInfo("daemonsets", True),
    ("apps/v1", "ReplicaSet"): KindInfo("replicasets", True),
    ("batch/v1", "Job"): KindInfo("jobs", True),
    ("batch/v1", "CronJob"): KindInfo("cronjobs", True),
    ("policy/v1", "PodDisruptionBudget"): KindInfo("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): KindInfo("networkpolicies", True),
    ("networking.k8s.io/v1", "Ingress"): KindInfo("ingresses", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): KindInfo("horizontalpodautoscalers", True),
    ("rbac.authorization.k8s.io/v1", "Role"): KindInfo("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): KindInfo("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): KindInfo("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): KindInfo("clusterrolebindings", False),
    ("cert-manager.io/v1", "Certificate"): KindInfo("certificates", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): KindInfo("customresourcedefinitions", False),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): KindInfo(
        "mutatingwebhookconfigurations", False
    ),
    ("agentobs.io/v1alpha1", "AgentObservability"): KindInfo("agentobservabilities", True),
    ("coordination.k8s.io/v1", "Lease"): KindInfo("leases", True),
}


class KubeError(Exception):
    """An API request failed. `status` is the HTTP code (0 when the server was not reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """A failure that passes by itself: the server unreachable, overloaded (429) or failing (5xx)."""
        return (self.status == 0 and self.reason == "Unreachable") or self.status == 429 or self.status >= 500


def is_namespaced(api_version: str, kind: str) -> bool:
    return KINDS[(api_version, kind)].namespaced


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        info = KINDS[(api_version, kind)]
    except KeyError:
        raise KubeError(0, "UnknownKind", f"{api_version} {kind} is not managed by the operator") from None
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [root]
    if info.namespaced and namespace:
        parts.append(f"namespaces/{namespace}")
    elif info.namespaced and name:
        raise KubeError(0, "NoNamespace", f"{kind} {name} needs a namespace")
    parts.append(info.plural)
    if name:
        parts.append(name)
    return "/".join(parts)


NAMESPACE_TERMINATING = "NamespaceTerminating"


def _kube_error(status: int, http_reason: str | None, body: Any, kind: str) -> KubeError:
    """Keep the server's Status.message; drop the body, which may echo what was sent."""
    message, reason = http_reason or "", "Error"
    try:
        parsed = json.loads(body or b"{}")
        message = parsed.get("message", message)
        reason = parsed.get("reason", reason)
        # A create refused in a namespace being deleted: said by a cause, which survives the
        # withheld message of a Secret (agentobs.stack.reconcile stops its pass on it).
        causes = (parsed.get("details") or {}).get("causes") or []
        if any(c.get("reason") == NAMESPACE_TERMINATING for c in causes):
            reason = NAMESPACE_TERMINATING
    except (ValueError, TypeError, AttributeError):
        pass
    if kind == "Secret":
        message = "request for a Secret failed (details withheld: they may contain secret data)"
    return KubeError(status, reason, message)


def share_tls_context(api_client: kubernetes.client.ApiClient) -> None:
    """Give every connection to the API server one TLS context, loaded once.

    urllib3 otherwise makes a context per connection and parses the CA and the client certificate
    into it again. The operator holds a connection per watch (a kind in a namespace), and each such
    context stayed resident: about 40 KiB a connection, 3 MiB for 68 watches. A proxy's pool is
    left as the client library set it up."""
    pool = api_client.rest_client.pool_manager
    if type(pool) is not urllib3.PoolManager:
        return
    settings = pool.connection_pool_kw
    context = urllib3.util.ssl_.create_urllib3_context(cert_reqs=settings.get("cert_reqs"))
    if settings.get("ca_certs") or settings.get("ca_cert_data"):
        context.load_verify_locations(cafile=settings.get("ca_certs"), cadata=settings.get("ca_cert_data"))
    elif context.verify_mode != ssl.CERT_NONE:
        context.load_default_certs()
    if settings.get("cert_file"):
        context.load_cert_chain(settings["cert_file"], settings.get("key_file"))
    settings.update(ssl_context=context, ca_certs=None, ca_cert_data=None, cert_file=None, key_file=None)


def _verb_and_resource(method: str, path: str, query: list[tuple[str, str]], content_type: str) -> tuple[str, str]:
    """The Kubernetes verb and resource (with subresource) of a request, for the request metric."""
    segments = path.strip("/").split("/")
    rest = segments[2:] if segments[0] == "api" else segments[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = "/".join([rest[0], *rest[2:3]]) if rest else ""
    named = len(rest) > 1
    if method == "GET":
        verb = "watch" if ("watch", "true") in query else ("get" if named else "list")
    elif method == "PATCH":
        verb = "apply" if content_type == "application/apply-patch+yaml" else "patch"
    else:
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())
    return verb, resource


WRITE_VERBS = frozenset({"create", "update", "patch", "apply", "delete"})


class Kube:
    """A synchronous client; the reconciler calls it from a worker thread."""

    _config_lock = threading.Lock()

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None, pool_size: int = 0) -> None:
        if api_client is None:
            with self._config_lock:
                try:
                    kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
                except kubernetes.config.ConfigException:
                    # Read $KUBECONFIG now: the library reads it once, at import.
                    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                        config_file=os.environ.get("KUBECONFIG") or None
                    )
            configuration = kubernetes.client.Configuration.get_default_copy()
            if pool_size:  # watches hold a connection each for as long as they run
                configuration.connection_pool_maxsize = pool_size
            api_client = kubernetes.client.ApiClient(configuration)
            api_client.user_agent = FIELD_MANAGER  # so audit logs name the operator's requests
            share_tls_context(api_client)
        self._api = api_client

    def _call(self, method: str, path: str, kind: str, body: Any = None, *,
              query: list[tuple[str, str]] | None = None, content_type: str = "application/json") -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        metrics.API_REQUESTS.labels(*_verb_and_resource(method, path, query or [], content_type)).inc()
        try:
            _, url, headers, body, _ = self._api.param_serialize(
                method=method, resource_path=path, query_params=query or [], header_params=headers,
                body=body, auth_settings=["BearerToken"],
            )
            response = self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=30)
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise _kube_error(int(exc.status or 0), exc.reason, exc.body, kind) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # unreachable; the text holds no payload
            raise KubeError(0, "Unreachable", type(exc).__name__) from None
        if response.status >= 400:
            raise _kube_error(response.status, response.reason, data, kind)
        return json.loads(data) if data else {}

    def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER, dry_run: bool = False) -> Manifest:
        """Server-side apply `manifest`, taking ownership of the fields it sets. With `dry_run`, the
        server validates strictly (unknown or duplicate fields are errors) and persists nothing."""
        meta = manifest["metadata"]
        path = _path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        result: Manifest = self._call(
            "PATCH", path, manifest["kind"], manifest,
            query=[("fieldManager", field_manager), ("force", "true")]
            + ([("dryRun", "All"), ("fieldValidation", "Strict")] if dry_run else []),
            content_type="application/apply-patch+yaml",
        )
        return result

    def create(self, manifest: Manifest) -> Manifest:
        """Create; a 409 KubeError when it exists (used where creation must win a race)."""
        meta = manifest["metadata"]
        result: Manifest = self._call("POST", _path(manifest["apiVersion"], manifest["kind"], meta.get("namespace")),
                                      manifest["kind"], manifest)
        return result

    def replace(self, manifest: Manifest) -> Manifest:
        """Replace; a 409 KubeError when metadata.resourceVersion is no longer current."""
        meta = manifest["metadata"]
        path = _path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        result: Manifest = self._call("PUT", path, manifest["kind"], manifest)
        return result

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Manifest | None:
        try:
            result: Manifest = self._call("GET", _path(api_version, kind, namespace, name), kind)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list(self, api_version: str, kind: str, namespace: str | None,
             label_selector: str = "") -> list[Manifest]:
        """Objects of a kind in `namespace`, or in every namespace when it is None."""
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self._call("GET", _path(api_version, kind, namespace), kind, query=query)
        items: list[Manifest] = result.get("items", [])
        for item in items:  # list items come without their type
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def list_page(self, api_version: str, kind: str, namespace: str | None, label_selector: str = "",
                  limit: int = 500, continue_: str = "") -> tuple[builtins.list[Manifest], str, str]:
        """One page of a list: (items, the list's resourceVersion, the continue token or "")."""
        query = [("limit", str(limit))] + ([("labelSelector", label_selector)] if label_selector else [])
        query += [("continue", continue_)] if continue_ else []
        result = self._call("GET", _path(api_version, kind, namespace), kind, query=query)
        items: list[Manifest] = result.get("items", [])
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        meta = result.get("metadata") or {}
        return items, str(meta.get("resourceVersion", "")), str(meta.get("continue") or "")

    def watch(self, api_version: str, kind: str, namespace: str | None, label_selector: str,
              resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, Manifest]]:
        """Watch events (type, object) from `resource_version`, with bookmarks, until the server
        ends the stream after `timeout_seconds`. An expired version yields ("ERROR", Status 410)."""
        path = _path(api_version, kind, namespace)
        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("resourceVersion", resource_version),
                 ("timeoutSeconds", str(timeout_seconds))]
        query += [("labelSelector", label_selector)] if label_selector else []
        metrics.API_REQUESTS.labels(*_verb_and_resource("GET", path, query, "")).inc()
        try:
            _, url, headers, _, _ = self._api.param_serialize(
                method="GET", resource_path=path, query_params=query,
                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            )
            response = self._api.call_api("GET", url, header_params=headers,
                                          _request_timeout=(10, timeout_seconds + 30))
        except ApiException as exc:
            raise _kube_error(int(exc.status or 0), exc.reason, exc.body, kind) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise KubeError(0, "Unreachable", type(exc).__name__) from None
        raw = response.response
        try:
            if response.status >= 400:
                raise _kube_error(response.status, response.reason, raw.read(), kind)
            pending = b""
            for chunk in raw.stream(65536, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type", "")), event.get("object") or {}
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise KubeError(0, "Unreachable", type(exc).__name__) from None
        finally:  # a stream left early cannot go back to the pool half read
            raw.close()
            raw.release_conn()

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
               propagation: str = "Background") -> None:
        try:
            self._call("DELETE", _path(api_version, kind, namespace, name), kind,
                       {"propagationPolicy": propagation})
        except KubeError as exc:
            if exc.status != 404:
                raise

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                     status: dict[str, Any]) -> None:
        """Merge-patch the status subresource; conditions are replaced as a whole list."""
        path = _path(api_version, kind, namespace, name) + "/status"
        self._call("PATCH", path, kind, {"status": status}, content_type="application/merge-patch+json")

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, body: dict[str, Any]) -> None:
        """A JSON merge patch, for the few changes that are not ours to own (a rollout restart)."""
        self._call("PATCH", _path(api_version, kind, namespace, name), kind, body,
                   content_type="application/merge-patch+json")

    def post_event(self, involved: dict[str, str], warning: bool, reason: str, message: str) -> None:
        """Record an Event about `involved` (apiVersion, kind, namespace, name and, if known, uid).
        Events about a cluster-scoped object (no namespace) go to `default`, where kubectl looks."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = involved.get("namespace") or "default"
        self._call("POST", _path("v1", "Event", namespace), "Event", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{involved['name'].rstrip('.')}.", "namespace": namespace},
            "involvedObject": involved, "type": "Warning" if warning else "Normal", "reason": reason,
            "message": message[:1000], "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        })


_shared: Kube | None = None
_shared_lock = threading.Lock()


def shared() -> Kube:
    """The process's one client, for the reconcile passes and the webhook alike."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Kube()
        return _shared
