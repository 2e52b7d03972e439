{{/*
Named templates shared by the chart's manifests. Each one says what it returns.
*/}}

{{/*
agentobs.name: the chart name, or nameOverride; at most 63 characters (a label value).
*/}}
{{- define "agentobs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
agentobs.fullname: the prefix of every object name. fullnameOverride, else the release name when
it already contains the chart name (so `helm install agentobs` gives `agentobs`, not
`agentobs-agentobs`), else `<release>-<chart>`. Truncated so that suffixed names stay valid.
*/}}
{{- define "agentobs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "agentobs.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
agentobs.operatorName: name of the operator's Deployment, ClusterRoles and their bindings, and the
value of the operator pods' `app.kubernetes.io/name` label (which the webhook's objectSelector
excludes, so the operator never mutates its own pods).
*/}}
{{- define "agentobs.operatorName" -}}
{{- printf "%s-operator" (include "agentobs.fullname" .) -}}
{{- end -}}

{{/*
agentobs.operatorLabelName: the `app.kubernetes.io/name` of the operator pods. Independent of the
release so that the operator's own default objectSelector (when it creates the webhook
configuration itself) and the chart's agree.
*/}}
{{- define "agentobs.operatorLabelName" -}}
{{- printf "%s-operator" (include "agentobs.name" .) -}}
{{- end -}}

{{/*
agentobs.serviceAccountName: the operator's ServiceAccount.
*/}}
{{- define "agentobs.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "agentobs.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
agentobs.webhookConfigurationName: the MutatingWebhookConfiguration (AGENTOBS_WEBHOOK_CONFIGURATION).
*/}}
{{- define "agentobs.webhookConfigurationName" -}}
{{- printf "%s-webhook" (include "agentobs.fullname" .) -}}
{{- end -}}

{{/*
agentobs.webhookServiceName: the Service in front of the webhook port of the operator pods.
*/}}
{{- define "agentobs.webhookServiceName" -}}
{{- printf "%s-webhook" (include "agentobs.fullname" .) -}}
{{- end -}}

{{/*
agentobs.metricsServiceName: the Service in front of the metrics port of the operator pods.
*/}}
{{- define "agentobs.metricsServiceName" -}}
{{- printf "%s-metrics" (include "agentobs.fullname" .) -}}
{{- end -}}

{{/*
agentobs.leaderElection: "true" when the operator replicas elect a leader (AGENTOBS_LEADER_ELECTION).
Refuses more than one replica without it: every replica would reconcile every resource at once.
*/}}
{{- define "agentobs.leaderElection" -}}
{{- if .Values.operator.leaderElection.enabled -}}
true
{{- else if and .Values.operator.enabled (gt (int .Values.operator.replicas) 1) -}}
{{- fail "operator.leaderElection.enabled=false with operator.replicas > 1 would have every replica reconcile at once: set operator.replicas=1, or enable leader election" -}}
{{- end -}}
{{- end -}}

{{/*
agentobs.leaseName: the coordination.k8s.io Lease the replicas elect their leader on, in the release
namespace. Fixed by the operator (agentobs.handlers), not configurable.
*/}}
{{- define "agentobs.leaseName" -}}
agentobs-operator-leader
{{- end -}}

{{/*
agentobs.stackName: the AgentObservability resource rendered when stack.enabled. Refuses what the
operator refuses (agentobs.api.formats.RESOURCE_NAME_MAX_LENGTH): the name prefixes the stack's
Service and StatefulSet names, so at most 38 characters, a letter first. Checked here too because
the default, the release's full name, is no value the schema sees.
*/}}
{{- define "agentobs.stackName" -}}
{{- $name := default (include "agentobs.fullname" .) .Values.stack.name -}}
{{- if or (gt (len $name) 38) (not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name)) -}}
{{- fail (printf "stack.name: %q cannot name a stack (at most 38 characters of a-z, 0-9 and '-', a letter first: it prefixes the stack's Service and StatefulSet names); set stack.name" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/*
agentobs.stackNamespace: the namespace of that resource. Refuses the release namespace, whose pods
the webhook never instruments: a stack there would wait for agents that never report.
*/}}
{{- define "agentobs.stackNamespace" -}}
{{- $ns := required "stack.namespace: name the namespace of the stack and its agents" .Values.stack.namespace -}}
{{- if eq $ns .Release.Namespace -}}
{{- fail (printf "stack.namespace: %q is the release namespace, whose pods the webhook never instruments; put the stack and its agents in another namespace (default: agents)" $ns) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{/*
agentobs.image: the operator image reference, `repository:tag` or `repository@digest`.
*/}}
{{- define "agentobs.image" -}}
{{- $image := .Values.operator.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
agentobs.watchNamespaces: the namespaces the operator serves, as a list (JSON); empty means the
whole cluster. The stack's namespace joins a non-empty list when the chart renders the stack, so
that the operator serves the stack it installs.
*/}}
{{- define "agentobs.watchNamespaces" -}}
{{- $namespaces := .Values.operator.watchNamespaces -}}
{{- if .Values.stack.enabled -}}
{{- $stackNamespace := include "agentobs.stackNamespace" . -}}
{{- if and $namespaces (not (has $stackNamespace $namespaces)) -}}
{{- $namespaces = append $namespaces $stackNamespace -}}
{{- end -}}
{{- end -}}
{{- toJson $namespaces -}}
{{- end -}}

{{/*
agentobs.clusterwide: "true" when the operator serves the whole cluster (no watchNamespaces).
*/}}
{{- define "agentobs.clusterwide" -}}
{{- if not (include "agentobs.watchNamespaces" . | fromJsonArray) -}}true{{- end -}}
{{- end -}}

{{/*
agentobs.namespacedRBAC: "true" when every served namespace is a literal name, so the operator's
namespaced permissions are granted per namespace (RoleBindings); globs and negations cannot be
bound ahead of time and fall back to a ClusterRoleBinding.
*/}}
{{- define "agentobs.namespacedRBAC" -}}
{{- $namespaces := include "agentobs.watchNamespaces" . | fromJsonArray -}}
{{- $literal := true -}}
{{- range $namespaces -}}
{{- if regexMatch "[*?\\[\\]!]" . -}}{{- $literal = false -}}{{- end -}}
{{- end -}}
{{- if and $namespaces $literal -}}true{{- end -}}
{{- end -}}

{{/*
agentobs.chartLabelKeys: the label keys the chart sets itself, as a JSON list: the standard ones
of agentobs.standardLabels and the name/instance/component that select each component's pods.
*/}}
{{- define "agentobs.chartLabelKeys" -}}
{{- list "helm.sh/chart" "app.kubernetes.io/managed-by" "app.kubernetes.io/part-of" "app.kubernetes.io/version"
    "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" | toJson -}}
{{- end -}}

{{/*
agentobs.standardLabels: the labels every object of the chart carries, besides
name/instance/component.
*/}}
{{- define "agentobs.standardLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentobs
app.kubernetes.io/version: {{ include "agentobs.versionLabel" . | quote }}
{{- end -}}

{{/*
agentobs.versionLabel: the image tag (or appVersion) as a label value: at most 63 characters,
starting and ending with a letter or digit. A tag may begin with `_` and end with `.` or `-` (or
end so once cut to 63), which as a label value the API server refuses on every object.
*/}}
{{- define "agentobs.versionLabel" -}}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" (default .Chart.AppVersion .Values.operator.image.tag | trunc 63) "" -}}
{{- end -}}

{{/*
agentobs.labelsWith: the standard labels, then commonLabels merged with the labels of one more
value (call with (dict "context" $ "value" "operator.podLabels" "extra" $map); "extra" may be
empty), that value winning where both name a key, so no key is written twice (a YAML map with a
repeated key is refused, or silently keeps the last). A user label repeating a key the chart sets
is refused, naming the value: on pods one of the selector's keys would leave the Deployment
selecting none of its pods (the API server refuses it, or the release stops matching its own
Services and PodDisruptionBudget), and on any object a second value of a chart label is ambiguous.
*/}}
{{- define "agentobs.labelsWith" -}}
{{- $ctx := .context -}}
{{- $chartKeys := include "agentobs.chartLabelKeys" $ctx | fromJsonArray -}}
{{- $merged := dict -}}
{{- range $source := list (list "commonLabels" $ctx.Values.commonLabels) (list .value .extra) -}}
{{- $value := index $source 0 -}}
{{- range $key, $label := index $source 1 -}}
{{- if has $key $chartKeys -}}
{{- fail (printf "%s: the label %q is one the chart sets itself on every object (the app.kubernetes.io/name, instance and component labels select each component's pods, so a value of yours would break the selectors); remove it, or use another key" $value $key) -}}
{{- end -}}
{{- $_ := set $merged $key $label -}}
{{- end -}}
{{- end -}}
{{ include "agentobs.standardLabels" $ctx }}
{{- with $merged }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
agentobs.labels: the labels every object of the chart carries, besides name/instance/component:
the standard ones and commonLabels.
*/}}
{{- define "agentobs.labels" -}}
{{ include "agentobs.labelsWith" (dict "context" . "value" "" "extra" (dict)) }}
{{- end -}}

{{/*
agentobs.operatorSelectorLabels: the labels that select the operator pods. They never change over
the life of a release (a Deployment's selector is immutable), so they hold no version.
*/}}
{{- define "agentobs.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "agentobs.operatorLabelName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
agentobs.operatorLabels: labels of the operator's objects: the common ones plus its selector labels.
*/}}
{{- define "agentobs.operatorLabels" -}}
{{ include "agentobs.labels" . }}
{{ include "agentobs.operatorSelectorLabels" . }}
{{- end -}}

{{/*
agentobs.operatorPodLabels: labels of the operator pods: operatorLabels with operator.podLabels
merged in (checked by agentobs.labelsWith).
*/}}
{{- define "agentobs.operatorPodLabels" -}}
{{ include "agentobs.labelsWith" (dict "context" . "value" "operator.podLabels" "extra" .Values.operator.podLabels) }}
{{ include "agentobs.operatorSelectorLabels" . }}
{{- end -}}

{{/*
agentobs.componentLabels: labels of an object of one chart component other than the operator
pods; call with (dict "context" $ "component" "webhook"), adding "value" and "extra" to merge a
value's labels in (see agentobs.labelsWith).
*/}}
{{- define "agentobs.componentLabels" -}}
{{ include "agentobs.labelsWith" (dict "context" .context "value" (default "" .value) "extra" (default (dict) .extra)) }}
app.kubernetes.io/name: {{ include "agentobs.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
agentobs.operatorEnv: the operator container's environment as the chart sets it, from the values
(a YAML list). Its own template so that operator.extraEnv can be checked against its names.
*/}}
{{- define "agentobs.operatorEnv" -}}
{{- $op := .Values.operator -}}
- name: AGENTOBS_BIND_ADDRESS
  value: "0.0.0.0"
- name: AGENTOBS_METRICS_PORT
  value: {{ $op.ports.metrics | quote }}
- name: AGENTOBS_HEALTH_PORT
  value: {{ $op.ports.health | quote }}
- name: AGENTOBS_WEBHOOK_PORT
  value: {{ $op.ports.webhook | quote }}
- name: AGENTOBS_WEBHOOK_CONFIGURATION
  value: {{ include "agentobs.webhookConfigurationName" . }}
- name: AGENTOBS_WEBHOOK_SERVICE
  value: {{ printf "%s/%s" .Release.Namespace (include "agentobs.webhookServiceName" .) }}
- name: AGENTOBS_OPERATOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: AGENTOBS_OPERATOR_DEPLOYMENT
  value: {{ include "agentobs.operatorName" . }}
# This replica's identity in the leader-election Lease (its holderIdentity).
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: AGENTOBS_LEADER_ELECTION
  value: {{ include "agentobs.leaderElection" . | eq "true" | quote }}
- name: AGENTOBS_LEADER_LEASE
  value: {{ include "agentobs.leaseName" . | quote }}
# The node log collector (logCollector): where the operator runs it, and its image.
- name: AGENTOBS_LOG_COLLECTOR_NAMESPACE
  value: {{ ternary .Release.Namespace "" .Values.logCollector.enabled | quote }}
- name: AGENTOBS_LOG_COLLECTOR_IMAGE
  value: {{ .Values.logCollector.image | quote }}
# Each stack's Prometheus scrapes every replica through this headless Service for the
# alerts on the stack's certificates and Degraded condition.
- name: AGENTOBS_METRICS_TARGET
  value: {{ printf "%s-pods.%s.svc:%v" (include "agentobs.metricsServiceName" .) .Release.Namespace .Values.metrics.service.port | quote }}
{{- with .Values.metrics.runbookURL }}
- name: AGENTOBS_RUNBOOK_URL
  value: {{ . | quote }}
{{- end }}
- name: AGENTOBS_NAMESPACES
  value: {{ include "agentobs.watchNamespaces" . | fromJsonArray | join "," | quote }}
- name: AGENTOBS_RESYNC_SECONDS
  value: {{ $op.resyncSeconds | quote }}
- name: AGENTOBS_RESYNC_RATE
  value: {{ $op.resyncRate | quote }}
- name: AGENTOBS_WORKERS
  value: {{ $op.workers | quote }}
- name: AGENTOBS_MALLOC_ARENAS
  value: {{ $op.mallocArenas | quote }}
- name: AGENTOBS_LOG_LEVEL
  value: {{ $op.logLevel }}
- name: AGENTOBS_MANAGE_CRD
  value: {{ $op.manageCRD | quote }}
# Python writes nothing else to disk; the root filesystem is read-only.
- name: TMPDIR
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}
