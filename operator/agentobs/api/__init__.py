"""The `AgentObservability` API: names, spec and status models, and the CRD generated from them."""

GROUP = "agentobs.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AgentObservability"
PLURAL = "agentobservabilities"
SINGULAR = "agentobservability"
SHORT_NAME = "aobs"
