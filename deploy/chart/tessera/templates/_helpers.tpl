{{/* Helm's standard labels, beside deploy/base's own. */}}
{{- define "tessera.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/* A per-node config's name is a label value and a file name beside config.yaml. */}}
{{- define "tessera.checkNodeConfigName" -}}
{{- if or (eq . "default") (eq . "config") (not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$" .)) -}}
{{- fail (printf "nodeConfigs.%s: a per-node config's name is the value of the label tessera.io/node-config: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63, not 'default' or 'config'" .) -}}
{{- end -}}
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
