{{/* replicas > 1 (docs/scaling.md, docs/kubernetes.md "Several replicas"): the LMTP mail store,
the Redis the replicas share their abuse counters in (cluster.redis.url + existingSecret, or the
chart's small Redis of cluster.redis.deploy), the peer listener and its Service
<fullname>-smtp-peers that a leaving pod hands its queue to (preStop `mailplane queue handoff`),
the peer secret, and spreading the pods. Everything here is inert with replicas <= 1. */}}

{{- define "mailplane.cluster.enabled" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{- define "mailplane.cluster.peerSecretName" -}}
{{- default (printf "%s-peer-secret" (include "mailplane.fullname" .)) .Values.cluster.peers.existingSecret -}}
{{- end -}}

{{- define "mailplane.cluster.peerSecretKey" -}}
{{- if .Values.cluster.peers.existingSecret -}}{{- default "secret" .Values.cluster.peers.key -}}{{- else -}}secret{{- end -}}
{{- end -}}

{{/* The Secret with the Redis password: cluster.redis.existingSecret, or the chart's (with deploy). */}}
{{- define "mailplane.cluster.redisSecretName" -}}
{{- if .Values.cluster.redis.deploy.enabled -}}
{{- printf "%s-cluster-redis" (include "mailplane.fullname" .) -}}
{{- else -}}
{{- .Values.cluster.redis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "mailplane.cluster.redisSecretKey" -}}
{{- if .Values.cluster.redis.deploy.enabled -}}password{{- else -}}{{- default "password" .Values.cluster.redis.key -}}{{- end -}}
{{- end -}}

{{- define "mailplane.cluster.redisUrl" -}}
{{- if .Values.cluster.redis.deploy.enabled -}}
{{- printf "redis://%s-cluster-redis.%s.svc:6379/0" (include "mailplane.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.cluster.redis.url -}}
{{- end -}}
{{- end -}}

{{/* host:port of the peer Service, config.cluster.peers.handoff */}}
{{- define "mailplane.cluster.handoff" -}}
{{- printf "%s-smtp-peers.%s.svc:%d" (include "mailplane.fullname" .) .Release.Namespace (int .Values.cluster.peers.servicePort) -}}
{{- end -}}

{{/* config.smtp.drainGrace in seconds */}}
{{- define "mailplane.cluster.drainSeconds" -}}
{{- include "mailplane.seconds" (dig "smtp" "drainGrace" "30s" (.Values.config | default dict)) -}}
{{- end -}}

{{/* --timeout of the preStop hand-off: drainGrace + cluster.handoff.timeoutSeconds */}}
{{- define "mailplane.cluster.handoffTimeout" -}}
{{- add (include "mailplane.cluster.drainSeconds" . | int) (int .Values.cluster.handoff.timeoutSeconds) -}}
{{- end -}}

{{/* The shortest terminationGracePeriodSeconds with replicas > 1: the hand-off's --timeout plus
30 s for the kubelet's SIGTERM and the process to exit; 0 with one replica. */}}
{{- define "mailplane.cluster.minGrace" -}}
{{- if include "mailplane.cluster.enabled" . -}}
{{- add (include "mailplane.cluster.handoffTimeout" . | int) 30 -}}
{{- else -}}0{{- end -}}
{{- end -}}

{{/* What replicas > 1 needs, refused with the reason when missing. */}}
{{- define "mailplane.cluster.check" -}}
{{- if include "mailplane.cluster.enabled" . -}}
{{- $config := .Values.config | default dict -}}
{{- $mailboxes := $config.mailboxes | default dict -}}
{{- $store := $mailboxes.store | default "maildir" | toString -}}
{{- if ne $store "lmtp" -}}
{{- fail (printf "replicas: %d needs config.mailboxes.store: lmtp (and mailboxes.lmtp.address, your Dovecot's LMTP service): with %s every replica would keep its own part of the mailboxes (docs/scaling.md)" (int .Values.replicas) $store) -}}
{{- end -}}
{{- if not (dig "lmtp" "address" "" $mailboxes) -}}
{{- fail (printf "replicas: %d with mailboxes.store: lmtp needs config.mailboxes.lmtp.address: the LMTP service of the Dovecot all replicas deliver to (e.g. dovecot.mail.svc:24)" (int .Values.replicas)) -}}
{{- end -}}
{{- $r := .Values.cluster.redis -}}
{{- $own := dig "cluster" "redis" "url" "" $config -}}
{{- if and $r.deploy.enabled $r.url -}}
{{- fail "cluster.redis: set cluster.redis.url (a Redis you run) or cluster.redis.deploy.enabled (the chart's), not both" -}}
{{- end -}}
{{- if and $own (or $r.url $r.deploy.enabled) -}}
{{- fail "config.cluster.redis.url: the chart sets it from cluster.redis; remove it from config (keep timeout and keyPrefix there)" -}}
{{- end -}}
{{- if not (or $own $r.url $r.deploy.enabled) -}}
{{- fail (printf "replicas: %d needs a Redis the replicas share their abuse limits in: set cluster.redis.url (and cluster.redis.existingSecret with its password) or cluster.redis.deploy.enabled" (int .Values.replicas)) -}}
{{- end -}}
{{- if and $r.url (not $r.existingSecret) -}}
{{- fail "cluster.redis.existingSecret: the Secret holding the password of cluster.redis.url is required (mailplane never takes a password in the URL)" -}}
{{- end -}}
{{- if dig "cluster" "peers" nil $config -}}
{{- fail "config.cluster.peers: with replicas > 1 the chart sets it (the Service <fullname>-smtp-peers and a generated secret); remove it from config" -}}
{{- end -}}
{{- range (($config.smtp | default dict).listeners | default list) -}}
{{- if eq (toString .role) "peer" -}}
{{- fail (printf "config.smtp.listeners: %s has role: peer, but with replicas > 1 the chart adds the peer listener itself (cluster.peers.containerPort); remove it" .name) -}}
{{- end -}}
{{- if eq (int .port) (int $.Values.cluster.peers.containerPort) -}}
{{- fail (printf "config.smtp.listeners: %s uses port %d, the peer listener's (cluster.peers.containerPort); move one of them" .name (int .port)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Sets config.cluster and the peer listener in the config (a copy of .Values.config), with replicas > 1. */}}
{{- define "mailplane.cluster.applyConfig" -}}
{{- $root := index . 0 -}}
{{- $config := index . 1 -}}
{{- if include "mailplane.cluster.enabled" $root -}}
{{- $cluster := $config.cluster | default dict -}}
{{- $redis := $cluster.redis | default dict -}}
{{- $url := include "mailplane.cluster.redisUrl" $root -}}
{{- if $url -}}
{{- $_ := set $redis "url" $url -}}
{{- $_ := set $redis "passwordFile" "../cluster/redis-password" -}}
{{- end -}}
{{- $_ := set $cluster "redis" $redis -}}
{{- $_ := set $cluster "peers" (dict "handoff" (include "mailplane.cluster.handoff" $root) "secretFile" "../cluster/peer-secret") -}}
{{- $_ := set $config "cluster" $cluster -}}
{{- $smtp := $config.smtp | default dict -}}
{{- $peer := dict "name" "peer" "port" (int $root.Values.cluster.peers.containerPort) "role" "peer" "tls" "starttls" "proxyProtocol" false -}}
{{- $_ := set $smtp "listeners" (append ($smtp.listeners | default list) $peer) -}}
{{- $_ := set $config "smtp" $smtp -}}
{{- end -}}
{{- end -}}

{{/* The peer listener's container port (statefulset.yaml, in ports:) */}}
{{- define "mailplane.cluster.containerPorts" -}}
{{- if include "mailplane.cluster.enabled" . -}}
- name: peer
  containerPort: {{ .Values.cluster.peers.containerPort }}
  protocol: TCP
{{- end -}}
{{- end -}}

{{/* preStop: hand the queue to the other replicas (statefulset.yaml, in the container) */}}
{{- define "mailplane.cluster.lifecycle" -}}
{{- if include "mailplane.cluster.enabled" . -}}
# a leaving pod (scale-down, upgrade, node drain) stops intake and hands its queue to the other
# replicas through <fullname>-smtp-peers, then exits (docs/scaling.md)
lifecycle:
  preStop:
    exec:
      command:
        - node
        - /app/bin/mailplane.js
        - queue
        - handoff
        - --config
        - /etc/mailplane/config/{{ .Values.configMapKey }}
        - --timeout
        - {{ printf "%ss" (include "mailplane.cluster.handoffTimeout" .) | quote }}
{{- end -}}
{{- end -}}

{{/* The peer secret and the Redis password, as /etc/mailplane/cluster/{peer-secret,redis-password} */}}
{{- define "mailplane.cluster.volumeMounts" -}}
{{- if include "mailplane.cluster.enabled" . -}}
# cluster.peers.secretFile: ../cluster/peer-secret; cluster.redis.passwordFile: ../cluster/redis-password
- name: cluster
  mountPath: /etc/mailplane/cluster
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "mailplane.cluster.volumes" -}}
{{- if include "mailplane.cluster.enabled" . -}}
- name: cluster
  projected:
    defaultMode: 288
    sources:
      - secret:
          name: {{ include "mailplane.cluster.peerSecretName" . }}
          items:
            - { key: {{ include "mailplane.cluster.peerSecretKey" . }}, path: peer-secret }
      {{- with include "mailplane.cluster.redisSecretName" . }}
      - secret:
          name: {{ . }}
          items:
            - { key: {{ include "mailplane.cluster.redisSecretKey" $ }}, path: redis-password }
      {{- end }}
{{- end -}}
{{- end -}}

{{/* affinity: the value, or with replicas > 1 and cluster.podAntiAffinity, pods kept off each
other's nodes (soft: preferred; hard: required) */}}
{{- define "mailplane.cluster.affinity" -}}
{{- if .Values.affinity -}}
{{- toYaml .Values.affinity -}}
{{- else if and (include "mailplane.cluster.enabled" .) (ne .Values.cluster.podAntiAffinity "none") -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "mailplane.selectorLabels" . | fromYaml)) -}}
podAntiAffinity:
{{- if eq .Values.cluster.podAntiAffinity "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list $term) | nindent 4 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list (dict "weight" 100 "podAffinityTerm" $term)) | nindent 4 }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* topologySpreadConstraints: the value, or with replicas > 1 and cluster.topologySpread, an even
spread over zones where the nodes carry topology.kubernetes.io/zone (never blocking scheduling) */}}
{{- define "mailplane.cluster.topologySpread" -}}
{{- if .Values.topologySpreadConstraints -}}
{{- toYaml .Values.topologySpreadConstraints -}}
{{- else if and (include "mailplane.cluster.enabled" .) .Values.cluster.topologySpread -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "mailplane.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}
