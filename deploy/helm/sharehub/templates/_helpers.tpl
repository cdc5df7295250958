{{/* Chart name, overridable. */}}
{{- define "sharehub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name used as the prefix of every object. */}}
{{- define "sharehub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "sharehub.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sharehub.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sharehub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sharehub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sharehub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sharehub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sharehub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sharehub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sharehub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sharehub.configMapName" -}}
{{- printf "%s-config" (include "sharehub.fullname" .) -}}
{{- end -}}

{{/* KubeRay names the head's Service "<RayCluster name>-head-svc". */}}
{{- define "sharehub.rayClusterName" -}}
{{- printf "%s-ray" (include "sharehub.fullname" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
The non-secret environment of every ShareHub container, as a YAML map. Rendered into the ConfigMap,
and inline into the migrate hook Job, which runs before the ConfigMap exists on a first install.
*/}}
{{- define "sharehub.configEnv" -}}
SHAREHUB_ENV: {{ .Values.config.env | quote }}
SHAREHUB_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
SHAREHUB_HTTP_HOST: "0.0.0.0"
SHAREHUB_HTTP_PORT: {{ .Values.config.httpPort | quote }}
SHAREHUB_JWT_KEYS_DIR: {{ .Values.config.jwtKeysDir | quote }}
SHAREHUB_JWT_ISSUER: {{ .Values.config.jwtIssuer | quote }}
SHAREHUB_JWT_AUDIENCE: {{ .Values.config.jwtAudience | quote }}
SHAREHUB_CORS_ORIGINS: {{ .Values.config.corsOrigins | quote }}
SHAREHUB_DATA_DIR: {{ .Values.config.dataDir | quote }}
SHAREHUB_SEARCH_REPLICAS: {{ .Values.config.searchReplicas | quote }}
SHAREHUB_GATEWAY_STARTS_SEARCH: "1"
SHAREHUB_MODEL_DIR: {{ .Values.ml.modelDir | quote }}
SHAREHUB_ML_TIMEOUT_SECS: {{ .Values.ml.timeoutSecs | quote }}
SHAREHUB_ML_RELOAD_SECS: {{ .Values.ml.reloadSecs | quote }}
SHAREHUB_SERVE_HTTP_HOST: "0.0.0.0"
SHAREHUB_SERVE_HTTP_PORT: {{ .Values.ml.serve.httpPort | quote }}
{{- with .Values.config.publicBaseUrl }}
SHAREHUB_PUBLIC_BASE_URL: {{ . | quote }}
{{- end }}
{{- with .Values.config.webAppUrl }}
SHAREHUB_WEB_APP_URL: {{ . | quote }}
{{- end }}
SHAREHUB_MAIL_FROM: {{ .Values.config.mailFrom | quote }}
SHAREHUB_TRUST_FORWARDED_FOR: {{ ternary "1" "0" .Values.config.trustForwardedFor | quote }}
S3_ENDPOINT_URL: {{ required "config.s3EndpointUrl is required" .Values.config.s3EndpointUrl | quote }}
SHAREHUB_S3_BUCKET: {{ .Values.config.s3Bucket | quote }}
RAY_ADDRESS: {{ default (printf "%s-head-svc:6379" (include "sharehub.rayClusterName" .)) .Values.config.rayAddress | quote }}
{{- end -}}

{{/* The models volume's claim: an existing one, or the chart's. */}}
{{- define "sharehub.modelsClaimName" -}}
{{- default (printf "%s-models" (include "sharehub.fullname" .)) .Values.ml.persistence.existingClaim -}}
{{- end -}}

{{- define "sharehub.serveConfigMapName" -}}
{{- printf "%s-serve" (include "sharehub.fullname" .) -}}
{{- end -}}

{{/* The volume of model artifacts, for a pod's `volumes`. */}}
{{- define "sharehub.modelsVolume" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "sharehub.modelsClaimName" . }}
{{- end -}}

{{/* envFrom shared by the gateway and the Ray containers. */}}
{{- define "sharehub.envFrom" -}}
- configMapRef:
    name: {{ include "sharehub.configMapName" . }}
- secretRef:
    name: {{ .Values.envSecret.name }}
{{- end -}}
