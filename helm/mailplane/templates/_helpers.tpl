{{/* Names and labels */}}
{{- define "mailplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailplane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mailplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mailplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations (at indent 2) from commonAnnotations and extra ones: include "mailplane.annotations" (list . $extra) */}}
{{- define "mailplane.annotations" -}}
{{- $all := merge (dict) (index . 1 | default dict) ((index . 0).Values.commonAnnotations | default dict) -}}
{{- with $all }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "mailplane.tlsSecretName" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else if or .Values.tls.certManager.enabled .Values.tls.selfSigned -}}
{{- printf "%s-tls" (include "mailplane.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "mailplane.configMapName" -}}
{{- default (printf "%s-config" (include "mailplane.fullname" .)) .Values.existingConfigMap -}}
{{- end -}}

{{/* The listeners of the config; the schema's default ones (25/587/465) cannot bind without root. */}}
{{- define "mailplane.listeners" -}}
{{- $smtp := .Values.config.smtp | default dict -}}
{{- if not $smtp.listeners -}}
{{- fail "config.smtp.listeners: list the listeners explicitly, on ports of 1024 or more (the container has no root); service.ports maps 25/587/465 to them" -}}
{{- end -}}
{{- range $smtp.listeners -}}
{{- if lt (int .port) 1024 -}}
{{- $suggest := ternary 2525 (add 2000 (int .port)) (eq (int .port) 25) -}}
{{- fail (printf "config.smtp.listeners: listener %s uses port %d, but the container runs without root and cannot bind ports below 1024; use e.g. %d and map the Service port with service.ports.%s" .name (int .port) $suggest .name) -}}
{{- end -}}
{{- end -}}
{{- toJson $smtp.listeners -}}
{{- end -}}

{{/* A listener name as a Kubernetes port name (at most 15 characters, letters, digits and single hyphens). */}}
{{- define "mailplane.portName" -}}
{{- $n := regexReplaceAll "[^a-z0-9]+" (lower .) "-" | trunc 15 | trimAll "-" -}}
{{- if not (regexMatch "[a-z]" $n) -}}{{- $n = printf "smtp-%s" $n | trunc 15 | trimSuffix "-" -}}{{- end -}}
{{- $n -}}
{{- end -}}

{{/* The port of observability.listen, which must be reachable from the kubelet (not loopback). */}}
{{- define "mailplane.opsPort" -}}
{{- $listen := dig "observability" "listen" "" (.Values.config | default dict) -}}
{{- if not $listen -}}
{{- fail "config.observability.listen: set it, e.g. 0.0.0.0:9465: the default 127.0.0.1:9465 cannot be reached by the kubelet's probes" -}}
{{- end -}}
{{- $host := regexReplaceAll ":[0-9]+$" $listen "" -}}
{{- if or (hasPrefix "127." $host) (eq $host "localhost" "[::1]") -}}
{{- fail (printf "config.observability.listen: %s is loopback, so the kubelet's probes and Prometheus cannot reach it; use 0.0.0.0:%s" $listen (regexFind "[0-9]+$" $listen)) -}}
{{- end -}}
{{- regexFind "[0-9]+$" $listen -}}
{{- end -}}

{{/* The Secret holding the ops token: opsToken.existingSecret, or the one the chart makes. */}}
{{- define "mailplane.opsTokenSecretName" -}}
{{- default (printf "%s-ops-token" (include "mailplane.fullname" .)) .Values.opsToken.existingSecret -}}
{{- end -}}

{{/* Its key: opsToken.key in an existing Secret, "token" in the chart's own. */}}
{{- define "mailplane.opsTokenKey" -}}
{{- if .Values.opsToken.existingSecret -}}{{- default "token" .Values.opsToken.key -}}{{- else -}}token{{- end -}}
{{- end -}}

{{/* observability.tokenFile must name the token the pod mounts at /etc/mailplane/ops-token: the
ops endpoint listens beyond loopback, where mailplane refuses to run without one (MP_OPS_TOKEN). */}}
{{- define "mailplane.checkOpsTokenFile" -}}
{{- $want := "../ops-token/token" -}}
{{- $file := dig "observability" "tokenFile" "" (.Values.config | default dict) -}}
{{- if not $file -}}
{{- fail (printf "config.observability.tokenFile: set it to %s: the ops endpoint listens beyond loopback, where mailplane requires a bearer token for /status and /-/reload (MP_OPS_TOKEN); the chart mounts one there (see opsToken)" $want) -}}
{{- else if ne $file $want -}}
{{- fail (printf "config.observability.tokenFile: %q is not where the chart mounts the ops token; keep %s, and for a token of your own set opsToken.existingSecret (and opsToken.key)" $file $want) -}}
{{- end -}}
{{- end -}}

{{/* DKIM signing keys come from the Secret dkim.existingSecret, mounted as a folder at
/etc/mailplane/dkim (the config says ../dkim/<key>), never from values. A key file the config
places in that folder needs the Secret, a Secret key holds no folder, and a key file from
secretFiles must not come from a value in clear. */}}
{{- define "mailplane.checkDkimKeys" -}}
{{- $mount := "/etc/mailplane/dkim" -}}
{{- $keys := dig "dkim" "keys" (list) (.Values.config | default dict) | default (list) -}}
{{- range $i, $k := $keys -}}
{{- $file := get $k "privateKeyFile" | default "" | toString -}}
{{- if $file -}}
{{- $abs := clean (isAbs $file | ternary $file (printf "/etc/mailplane/config/%s" $file)) -}}
{{- if hasPrefix (printf "%s/" $mount) $abs -}}
{{- if not $.Values.dkim.existingSecret -}}
{{- fail (printf "config.dkim.keys[%d].privateKeyFile: %q is in %s, where the chart mounts the Secret named by dkim.existingSecret, and none is given: create a Secret whose keys are the key files (kubectl create secret generic mail-dkim --from-file=%s) and set dkim.existingSecret; DKIM keys never go into values" $i $file $mount (base $abs)) -}}
{{- end -}}
{{- if contains "/" (trimPrefix (printf "%s/" $mount) $abs) -}}
{{- fail (printf "config.dkim.keys[%d].privateKeyFile: %q is in a folder below %s, but each key of the Secret dkim.existingSecret is one file directly in it: use ../dkim/<key>" $i $file $mount) -}}
{{- end -}}
{{- else if hasPrefix "/etc/mailplane/secrets/" $abs -}}
{{- $entry := get ($.Values.secretFiles | default dict) (trimPrefix "/etc/mailplane/secrets/" $abs) -}}
{{- if and (kindIs "map" $entry) (hasKey $entry "value") -}}
{{- fail (printf "config.dkim.keys[%d].privateKeyFile: %q comes from secretFiles.%s.value, a private key in clear in the values: put the key into a Secret and set dkim.existingSecret (privateKeyFile: ../dkim/<key>)" $i $file (trimPrefix "/etc/mailplane/secrets/" $abs)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mailplane.dataDir" -}}
{{- $dir := dig "storage" "dataDir" "/var/lib/mailplane" (.Values.config | default dict) -}}
{{- if not (isAbs $dir) -}}
{{- fail (printf "config.storage.dataDir: %q must be an absolute path, where the data volume is mounted (relative paths would point into the read-only config folder)" $dir) -}}
{{- end -}}
{{- $dir -}}
{{- end -}}

{{/* A duration of the config (seconds, or "500ms", "30s", "5m", "2h", "5d") in whole seconds, rounded up. */}}
{{- define "mailplane.seconds" -}}
{{- if kindIs "string" . -}}
{{- $s := trim . -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s | float64 -}}
{{- $unit := trim (regexReplaceAll "^[0-9]+(\\.[0-9]+)?" $s "") -}}
{{- $mul := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "d" 86400.0) $unit -}}
{{- mulf $num $mul | ceil | int -}}
{{- else -}}
{{- . | int -}}
{{- end -}}
{{- end -}}

{{- define "mailplane.terminationGracePeriodSeconds" -}}
{{- $drain := include "mailplane.seconds" (dig "smtp" "drainGrace" "30s" (.Values.config | default dict)) | int -}}
{{- $grace := .Values.terminationGracePeriodSeconds | int -}}
{{- /* replicas > 1: long enough for the preStop hand-off (_cluster.tpl) */ -}}
{{- $grace = max $grace (include "mailplane.cluster.minGrace" . | int) -}}
{{- if le $grace (add $drain 5) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.smtp.drainGrace (%ds) plus 5s, or the kubelet kills sessions that are still finishing; raise it to at least %d" $grace $drain (add $drain 10)) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{- define "mailplane.externalTrafficPolicy" -}}
{{- if .Values.service.externalTrafficPolicy -}}
{{- .Values.service.externalTrafficPolicy -}}
{{- else if .Values.proxyProtocol.enabled -}}
Cluster
{{- else -}}
Local
{{- end -}}
{{- end -}}

{{- define "mailplane.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}
