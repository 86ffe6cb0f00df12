{{/* Names: with the release called "modelpin" (the documented install) every
object has the name the Kustomize base gives it. */}}
{{- define "modelpin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelpin.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: modelpin
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelpin.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelpin.tlsSecret" -}}
{{- .Values.certs.secret.name | default (printf "%s-webhook-tls" (include "modelpin.fullname" .)) -}}
{{- end -}}

{{- define "modelpin.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The shared CEL (files/admission-cel.yaml), parsed once per use. */}}
{{- define "modelpin.cel" -}}
{{- .Files.Get "files/admission-cel.yaml" | fromYaml | toJson -}}
{{- end -}}

{{/* Service DNS names both Services answer to, for the serving certificate. */}}
{{- define "modelpin.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- range $svc := list (printf "%s-webhook" (include "modelpin.fullname" .)) (printf "%s-reconciler" (include "modelpin.fullname" .)) }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}
{{- end -}}

{{/* The hardened pod and container settings of both Deployments: the
"restricted" Pod Security Standard. */}}
{{- define "modelpin.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "modelpin.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "modelpin.volumes" -}}
- name: tls
  secret:
    secretName: {{ include "modelpin.tlsSecret" . }}
    defaultMode: 0440
- name: config
  configMap:
    name: {{ include "modelpin.fullname" . }}-config
- name: mlflow-credentials
  secret:
    secretName: {{ .Values.mlflowSecret }}
    optional: true
    defaultMode: 0440
    # only the registry token: the HMAC key MLflow signs deliveries with
    # reaches the reconciler alone, through its environment
    items:
      - key: mlflow-token
        path: mlflow-token
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* Mounted as whole directories (no subPath) so a renewed certificate
reaches the pod; the processes re-read it. */}}
{{- define "modelpin.volumeMounts" -}}
- name: tls
  mountPath: /tls
  readOnly: true
- name: config
  mountPath: /etc/modelpin
  readOnly: true
- name: mlflow-credentials
  mountPath: /var/run/secrets/modelpin
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Egress both pods need: DNS, and the registry (MLflow) on its ports. */}}
{{- define "modelpin.egressDNSAndRegistry" -}}
{{- $egress := .Values.networkPolicy.egress -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $egress.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml $egress.dns.podLabels | nindent 10 }}
- ports:
    {{- range $egress.registry.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $egress.registry.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with $egress.extraTo }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* admissionReviewVersions and clientConfig, shared by both webhook entries. */}}
{{- define "modelpin.webhookEntry" -}}
{{- $fullname := include "modelpin.fullname" . -}}
admissionReviewVersions: [v1]
clientConfig:
  {{- if .Values.webhook.url }}
  url: {{ .Values.webhook.url }}
  {{- else }}
  service:
    name: {{ $fullname }}-webhook
    namespace: {{ .Release.Namespace }}
    path: /mutate
    port: 443
  {{- end }}
  {{- if eq .Values.certs.source "secret" }}
  caBundle: {{ .Values.certs.caBundle }}
  {{- end }}
{{- end }}
