{{- define "handoff.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "handoff.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "handoff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "handoff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "handoff.labels" -}}
{{ include "handoff.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "handoff.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "handoff.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Refuse what cannot work, with the value to change. */}}
{{- define "handoff.validate" -}}
{{- if not (has .Values.database.type (list "sqlite" "postgres")) -}}
{{- fail (printf "database.type must be sqlite or postgres, not %q" .Values.database.type) -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (eq .Values.database.type "sqlite") -}}
{{- fail (printf "replicaCount is %d but database.type is sqlite: SQLite is one process's file. Use database.type=postgres (HANDOFF_DATABASE_URL in existingSecret) for more than one replica." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (eq .Values.database.type "postgres") (or (not .Values.existingSecret) (not (has "HANDOFF_DATABASE_URL" .Values.secretKeys))) -}}
{{- fail "database.type=postgres needs existingSecret with the key HANDOFF_DATABASE_URL listed in secretKeys (the URL holds a password)" -}}
{{- end -}}
{{- if hasKey .Values.config "HANDOFF_DATABASE_URL" -}}
{{- fail "config.HANDOFF_DATABASE_URL: set database.type instead; a PostgreSQL URL holds a password and belongs in existingSecret" -}}
{{- end -}}
{{- range .Values.secretKeys -}}
{{- if hasKey $.Values.config . -}}
{{- fail (printf "%s is in both config and secretKeys: secrets belong in existingSecret only" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
