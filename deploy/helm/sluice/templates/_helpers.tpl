{{/*
The chart's name, and the full name every object is named after: the
release name, or release-chart when the release name does not contain the
chart's. `helm install sluice ...` gives objects named sluice-controller,
as the kustomize install (crds/) names them.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The controller's objects: Deployment, Service, ConfigMap, RBAC, ... */}}
{{- define "sluice.controllerName" -}}
{{- printf "%s-controller" (include "sluice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the controller's objects. */}}
{{- define "sluice.controllerLabels" -}}
{{ include "sluice.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller pods' selector: as crds/controller/deployment.yaml's, plus the instance. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "sluice.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the xDS serving certificate in certManager and files modes. */}}
{{- define "sluice.xdsTLSSecret" -}}
{{- $tls := .Values.xds.tls }}
{{- if eq $tls.mode "certManager" }}
{{- default (printf "%s-xds-tls" (include "sluice.fullname" .)) $tls.certManager.secretName }}
{{- else if eq $tls.mode "files" }}
{{- required "xds.tls.files.secretName: the kubernetes.io/tls Secret to mount (mode files)" $tls.files.secretName }}
{{- end }}
{{- end }}

{{/* Where files mode mounts that Secret. */}}
{{- define "sluice.xdsTLSDir" -}}/etc/sluice-tls/xds{{- end }}

{{/* Checks that reject values the controller would refuse or that would break HA. */}}
{{- define "sluice.validate" -}}
{{- $mode := .Values.xds.tls.mode }}
{{- if not (has $mode (list "selfSigned" "certManager" "files" "insecurePlaintext")) }}
{{- fail (printf "xds.tls.mode: %q: want selfSigned, certManager, files or insecurePlaintext" $mode) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "leaderElection.enabled: false with replicaCount > 1: every replica would advance rollouts; keep leader election on, or run one replica" }}
{{- end }}
{{- if and .Values.xds.tls.certManager.createCertificate (not .Values.xds.tls.certManager.issuerRef.name) }}
{{- fail "xds.tls.certManager.issuerRef.name: required with createCertificate (the cert-manager Issuer or ClusterIssuer that signs the xDS certificate)" }}
{{- end }}
{{- end }}
