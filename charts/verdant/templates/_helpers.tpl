{{/* The chart name. */}}
{{- define "verdant.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name: the release name, with the chart name unless the
release name holds it already. */}}
{{- define "verdant.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "verdant.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: verdant
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of a component's objects: (dict "root" $ "component" "operator"). */}}
{{- define "verdant.componentLabels" -}}
{{ include "verdant.labels" .root }}
app.kubernetes.io/name: verdant-{{ .component }}
{{- end }}

{{/* Selector labels of a component: (dict "root" $ "component" "operator"). */}}
{{- define "verdant.selectorLabels" -}}
app.kubernetes.io/name: verdant-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* An image reference: (dict "root" $ "image" .Values.operator.image). */}}
{{- define "verdant.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The securityContext of the operator and broker containers. */}}
{{- define "verdant.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The launcher settings file (verdant-operator --launcher-settings). */}}
{{- define "verdant.launcherSettings" -}}
{{- $l := .Values.launcher }}
{{- $settings := dict "nodeSelector" $l.nodeSelector "tolerations" $l.tolerations "cpuAllocationRatio" $l.cpuAllocationRatio }}
{{- with $l.image.pullPolicy }}{{ $_ := set $settings "imagePullPolicy" . }}{{ end }}
{{- with $l.runtimeClassName }}{{ $_ := set $settings "runtimeClassName" . }}{{ end }}
{{- $_ := set $settings "hostPaths" $l.hostPaths }}
{{- $_ := set $settings "privileged" $l.privileged }}
{{- $policy := dict "enabled" .Values.networkPolicy.enabled }}
{{- if .Values.broker.enabled }}
{{- $_ := set $policy "brokerNamespace" .Release.Namespace }}
{{- $_ := set $policy "brokerPodLabels" (include "verdant.selectorLabels" (dict "root" . "component" "broker") | fromYaml) }}
{{- end }}
{{- $_ := set $settings "networkPolicy" $policy }}
{{- toYaml $settings }}
{{- end }}

{{/* Where pods reach kube-apiserver when the kubernetes Service does not serve them
(apiServer.host): the variables client libraries read for their in-cluster config. */}}
{{- define "verdant.apiServerEnv" -}}
{{- with .Values.apiServer.host -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ $.Values.apiServer.port | quote }}
{{- end }}
{{- end }}
