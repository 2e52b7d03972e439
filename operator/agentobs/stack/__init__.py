"""The reconcile half: one `AgentObservability` resource in, its running stack out.

`reconcile` runs one pass: `material` gathers the generated certificates and credentials,
`agentobs.render` makes the manifests, `desired` stamps each with its applied hash and tells what
needs sending, `cache` reads the children from watch-fed caches and writes only what differs,
`prune` removes what the spec no longer asks for, and `status` judges readiness and writes the
status. `logroutes` keeps the cluster's one log collector in step with every resource.
"""
