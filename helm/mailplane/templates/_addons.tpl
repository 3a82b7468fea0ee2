{{/* The optional parts around the server (templates/addon-*.yaml): DNS records for external-dns
and the MTA-STS Ingress (dns, mtaSts), Rspamd with its Redis (rspamd), Dovecot beside mailplane
(mailboxes.dovecot). What they need in the server's config is set here, in one place, and the
ConfigMap (configmap.yaml) and the DNS records (_dns.tpl) both read the result. */}}

{{/* Sets in the config (a copy of .Values.config) what the add-ons need:
include "mailplane.addons.applyConfig" (list $ $config). */}}
{{- define "mailplane.addons.applyConfig" -}}
{{- $root := index . 0 -}}
{{- $config := index . 1 -}}
{{- $url := include "mailplane.rspamd.url" $root -}}
{{- if $url -}}
{{- $inbound := $config.inbound | default dict -}}
{{- $spam := $inbound.spamFilter | default dict -}}
{{- if and $spam.url (ne (toString $spam.url) $url) -}}
{{- fail (printf "config.inbound.spamFilter.url: %q, but %s sets it to %s; remove it from config (keep timeout, onError, maxSize, scanSubmissions there)" (toString $spam.url) (ternary "rspamd.existingUrl" "rspamd.enabled" (not $root.Values.rspamd.enabled)) $url) -}}
{{- end -}}
{{- $_ := set $spam "type" "rspamd" -}}
{{- $_ := set $spam "url" $url -}}
{{- $_ := set $inbound "spamFilter" $spam -}}
{{- $_ := set $config "inbound" $inbound -}}
{{- else if and $config.inbound (kindIs "map" $config.inbound) $config.inbound.spamFilter (not $config.inbound.spamFilter.url) -}}
{{- fail "config.inbound.spamFilter: give its url (and type: rspamd), or set rspamd.enabled (the chart runs Rspamd) or rspamd.existingUrl" -}}
{{- end -}}
{{- if $root.Values.mailboxes.dovecot.enabled -}}
{{- include "mailplane.dovecot.applyConfig" (list $root $config) -}}
{{- end -}}
{{- /* replicas > 1: config.cluster and the peer listener (_cluster.tpl) */ -}}
{{- include "mailplane.cluster.applyConfig" (list $root $config) -}}
{{- end -}}

{{/* The config the pods get, as JSON (without the PROXY protocol flags, which no add-on reads). */}}
{{- define "mailplane.addons.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- include "mailplane.addons.applyConfig" (list . $config) -}}
{{- toJson $config -}}
{{- end -}}

{{/* Labels of an add-on's objects: the chart's, with its own component. include "mailplane.addons.labels" (list $ "rspamd") */}}
{{- define "mailplane.addons.labels" -}}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mailplane.addons.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "mailplane.name" (index . 0) }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
{{- with (index . 0).Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of an add-on's pods: never those of the mailplane pods (mailplane.selectorLabels),
so the StatefulSet, its Services, PDB and NetworkPolicy never select them. */}}
{{- define "mailplane.addons.selectorLabels" -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end -}}

{{/* An image reference: repository:tag, and @digest when given (then the digest decides; the tag documents it). */}}
{{- define "mailplane.addons.image" -}}
{{- if and .digest .tag -}}
{{- printf "%s:%s@%s" .repository .tag .digest -}}
{{- else if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (required (printf "image tag of %s is required" .repository) .tag) -}}
{{- end -}}
{{- end -}}

{{/* The URL of Rspamd's normal worker for config.inbound.spamFilter.url: the chart's Rspamd, or
rspamd.existingUrl; "" when neither. */}}
{{- define "mailplane.rspamd.url" -}}
{{- if and .Values.rspamd.enabled .Values.rspamd.existingUrl -}}
{{- fail "rspamd: set rspamd.enabled (the chart runs Rspamd) or rspamd.existingUrl (an Rspamd you run), not both" -}}
{{- else if .Values.rspamd.enabled -}}
{{- printf "http://%s-rspamd.%s.svc:11333" (include "mailplane.fullname" .) .Release.Namespace -}}
{{- else if .Values.rspamd.existingUrl -}}
{{- .Values.rspamd.existingUrl | trimSuffix "/" -}}
{{- end -}}
{{- end -}}

{{/* The files of /etc/rspamd, as JSON {path: content}: the chart's, with rspamd.files over them
(null removes one). What the chart's say and why is in values.yaml and docs/kubernetes.md. */}}
{{- define "mailplane.rspamd.files" -}}
{{- $fullname := include "mailplane.fullname" . -}}
{{- $files := dict
  "local.d/redis.conf" (printf "# Redis for Bayes statistics, greylisting, rate limits, replies, history and reputation: the chart's\nservers = \"%s-redis:6379\";\n" $fullname)
  "override.d/worker-normal.inc" "# mailplane scans here (config.inbound.spamFilter.url): every address of the pod\nbind_socket = \"0.0.0.0:11333\";\n"
  "override.d/worker-controller.inc" "# the web interface and learning (rspamc learn_spam): inside the pod only (kubectl exec, port-forward)\nbind_socket = \"127.0.0.1:11334\";\n"
  "override.d/worker-proxy.inc" "# mailplane talks to the normal worker; no milter, no proxy\nenabled = false;\n"
  "local.d/fuzzy_check.conf" "# would send a digest of every message to rspamd.com's fuzzy storage (a third party)\nenabled = false;\n"
  "local.d/url_redirector.conf" "# would fetch the URLs found in mail (from inside the cluster)\nenabled = false;\n"
  "local.d/dkim_signing.conf" "# mailplane signs outbound mail (config.dkim); Rspamd must not add signatures of its own\nenabled = false;\n"
-}}
{{- range $path, $content := .Values.rspamd.files | default dict -}}
{{- if kindIs "invalid" $content -}}
{{- $_ := unset $files $path -}}
{{- else -}}
{{- $_ := set $files $path (toString $content) -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}
