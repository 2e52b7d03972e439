"""agentobs: a Kubernetes operator that gives AI-agent workloads a production observability stack.

Layout, in two halves as kopf separates its layers: `stack` (the reconcile half: render, apply,
observe, write status) and `admission` (the webhook half: injection, its server and certificates,
coverage). Both stand on `api` (the resource's models and CRD), `render` (pure functions from spec to
manifests) and `kube` (the one module that talks to the API server); `handlers` is the kopf wiring
and `main` the process.
"""
