"""agentobs: a Kubernetes operator that gives AI-agent workloads a production observability stack.

Layout: `api` (the resource's models and CRD), `render` (pure functions from spec to manifests),
`kube` (the one module that talks to the API server), `reconcile` (render, apply, observe, write
status), `handlers` (the kopf wiring), `main` (the process).
"""
