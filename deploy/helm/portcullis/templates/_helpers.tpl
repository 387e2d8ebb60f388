{{/*
Object names are fixed (portcullis-webhook, portcullis-operator, ...): the
operator's flags default to them, the kustomize route uses them, and one
cluster runs one Portcullis.
*/}}

{{/* Labels every object carries. */}}
{{- define "portcullis.labels" -}}
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* An image by digest when one is given, else by tag (default: appVersion). */}}
{{- define "portcullis.image" -}}
{{- $image := index .root.Values.images .name -}}
{{- if $image.digest -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" $image.digest) -}}
{{- fail (printf "images.%s.digest must look like sha256:<64 hex digits>, got %q" .name $image.digest) -}}
{{- end -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The webhook's Secret with the client CA. */}}
{{- define "portcullis.clientCASecret" -}}
{{- .Values.webhook.clientAuth.existingSecret | default "portcullis-webhook-client-ca" -}}
{{- end }}

{{/* Namespaces the webhook never gates. */}}
{{- define "portcullis.excludedNamespaces" -}}
{{- $names := list "kube-system" .Release.Namespace -}}
{{- range .Values.admission.excludedNamespaces -}}
{{- if not (has . $names) -}}{{- $names = append $names . -}}{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end }}

{{/* The webhook's memory: cache bound plus the process's own. */}}
{{- define "portcullis.webhookMemory" -}}
{{- printf "%dMi" (add (int .Values.webhook.cacheMaxMiB) (int .Values.webhook.memoryOverheadMiB)) -}}
{{- end }}
