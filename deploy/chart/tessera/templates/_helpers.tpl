{{/* Helm's standard labels, beside deploy/base's own. */}}
{{- define "tessera.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/* The node config's name carries a hash of its content, as kustomize's configMapGenerator does: a change
rolls the node DaemonSets. */}}
{{- define "tessera.nodeConfigName" -}}
{{ printf "tessera-node-config-%s" (toYaml .Values.nodeConfig | sha256sum | trunc 10) }}
{{- end }}

{{/* The webhook's caBundle: make-keys.sh's CA, or none where cert-manager injects its own. */}}
{{- define "tessera.caBundle" -}}
{{- if not .Values.certManager.enabled -}}
{{ required "keys.webhook.caCrt: the CA make-keys.sh wrote (--set-file keys.webhook.caCrt=deploy/keys/webhook/ca.crt)" .Values.keys.webhook.caCrt | b64enc | quote }}
{{- end }}
{{- end }}

{{- define "tessera.webhookAnnotations" -}}
{{- if .Values.certManager.enabled -}}
cert-manager.io/inject-ca-from: tessera-system/tessera-webhook
{{- end }}
{{- end }}
