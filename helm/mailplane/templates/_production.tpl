{{/* Checks that keep a production install out of trouble: the memory limit against what the
config can need, the PDB against replicas, and the image (replicas > 1 and what it needs:
_cluster.tpl). */}}

{{/* A size of the config (bytes, or "25MB", "64MiB"…: B, KB, MB, GB ×1000, KiB, MiB, GiB ×1024) in bytes, as a float. */}}
{{- define "mailplane.sizeBytes" -}}
{{- if kindIs "string" . -}}
{{- $s := trim . -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s | float64 -}}
{{- $unit := trim (regexReplaceAll "^[0-9]+(\\.[0-9]+)?" $s "") -}}
{{- $mul := get (dict "" 1.0 "B" 1.0 "KB" 1000.0 "MB" 1000000.0 "GB" 1000000000.0 "KiB" 1024.0 "MiB" 1048576.0 "GiB" 1073741824.0) $unit -}}
{{- mulf $num $mul -}}
{{- else -}}
{{- . | float64 -}}
{{- end -}}
{{- end -}}

{{/* A Kubernetes quantity ("512Mi", "1Gi", "600M", "1e9", a number) in bytes, as a float; -1 when it is none of those. */}}
{{- define "mailplane.quantityBytes" -}}
{{- $s := toString . | trim -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$" $s -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?" $s "" -}}
{{- $mul := get (dict "" 1.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0) $unit -}}
{{- mulf $num $mul -}}
{{- else if regexMatch "^[0-9]+(\\.[0-9]+)?[eE]\\+?[0-9]+$" $s -}}
{{- $s | float64 -}}
{{- else -}}
-1
{{- end -}}
{{- end -}}

{{/* A default of the mailserver.yaml schema, by its path, as text: from files/config-defaults.json,
which `npm run generate` writes from the schema (the chart repeats no default). */}}
{{- define "mailplane.schemaDefault" -}}
{{- $node := (index . 0).Files.Get "files/config-defaults.json" | fromJson -}}
{{- range (index . 1) -}}
{{- $node = get $node . -}}
{{- end -}}
{{- if kindIs "string" $node -}}{{- $node -}}{{- else -}}{{- printf "%.0f" ($node | float64) -}}{{- end -}}
{{- end -}}

{{/* A size setting of the config in bytes: its value, else the schema's default. */}}
{{- define "mailplane.configSize" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $node := $root.Values.config | default dict -}}
{{- range initial $path -}}
{{- $node = get $node . | default dict -}}
{{- end -}}
{{- $value := get $node (last $path) -}}
{{- if or (kindIs "invalid" $value) (eq (toString $value) "") -}}
{{- $value = include "mailplane.schemaDefault" (list $root $path) -}}
{{- end -}}
{{- include "mailplane.sizeBytes" $value -}}
{{- end -}}

{{/* MiB, rounded up, for messages. */}}
{{- define "mailplane.mib" -}}
{{- divf . 1048576.0 | ceil | int -}}
{{- end -}}

{{/* The memory the config can need, in bytes (docs/kubernetes.md#memory): the runtime (192 MiB:
about 150 MiB idle, measured, and room for the JIT, workers and garbage), the bodies held while
received (storage.memoryBudget), and the mail being delivered (delivery.maxBytesInFlight, or one
message of smtp.maxMessageSize, which goes alone when it is larger). Bodies stream from disk on
the way out, so the last term is a bound, not what delivery usually holds. */}}
{{- define "mailplane.memoryNeed" -}}
{{- $runtime := 201326592.0 -}}
{{- $received := include "mailplane.configSize" (list . (list "storage" "memoryBudget")) | float64 -}}
{{- $inFlight := include "mailplane.configSize" (list . (list "delivery" "maxBytesInFlight")) | float64 -}}
{{- $message := include "mailplane.configSize" (list . (list "smtp" "maxMessageSize")) | float64 -}}
{{- dict "runtime" $runtime "received" $received "inFlight" $inFlight "message" $message "total" (addf $runtime $received (max $inFlight $message | float64)) | toJson -}}
{{- end -}}

{{/* resources.limits.memory must hold what the config can need: helm template fails otherwise. */}}
{{- define "mailplane.checkMemory" -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- if $limit -}}
{{- $bytes := include "mailplane.quantityBytes" $limit | float64 -}}
{{- if lt $bytes 0.0 -}}
{{- fail (printf "resources.limits.memory: %q is not a memory quantity (e.g. 512Mi, 1Gi)" (toString $limit)) -}}
{{- end -}}
{{- $need := include "mailplane.memoryNeed" . | fromJson -}}
{{- if lt $bytes $need.total -}}
{{- fail (printf "resources.limits.memory: %s is below what this config can need, %dMi = %dMi for the runtime + storage.memoryBudget (%dMi) + the larger of delivery.maxBytesInFlight (%dMi) and smtp.maxMessageSize (%dMi); the pod may be OOM-killed under load. Raise the limit to at least %dMi, or lower those settings (see docs/kubernetes.md, Memory)" (toString $limit) (include "mailplane.mib" $need.total | int) (include "mailplane.mib" $need.runtime | int) (include "mailplane.mib" $need.received | int) (include "mailplane.mib" $need.inFlight | int) (include "mailplane.mib" $need.message | int) (include "mailplane.mib" $need.total | int)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A PodDisruptionBudget that lets no pod be evicted blocks every node drain: refused. */}}
{{- define "mailplane.checkPdb" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if $pdb.enabled -}}
{{- $replicas := int .Values.replicas -}}
{{- $min := $pdb.minAvailable -}}
{{- if not (kindIs "invalid" $min) -}}
{{- $blocks := false -}}
{{- if kindIs "string" $min -}}
{{- $blocks = and (hasSuffix "%" $min) (ge (trimSuffix "%" $min | atoi) 100) -}}
{{- if not (hasSuffix "%" $min) -}}{{- $blocks = ge (atoi $min) $replicas -}}{{- end -}}
{{- else -}}
{{- $blocks = ge (int $min) $replicas -}}
{{- end -}}
{{- if $blocks -}}
{{- fail (printf "podDisruptionBudget.minAvailable: %v with replicas: %d lets no pod be evicted, so every node drain (a cluster upgrade) waits forever; use maxUnavailable: 1 (the default), or a minAvailable below replicas" $min $replicas) -}}
{{- end -}}
{{- else if and (not (kindIs "invalid" $pdb.maxUnavailable)) (eq (toString $pdb.maxUnavailable) "0") -}}
{{- fail "podDisruptionBudget.maxUnavailable: 0 lets no pod be evicted, so every node drain (a cluster upgrade) waits forever; use 1" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* No public registry publishes mailplane's image: the chart names none by default. */}}
{{- define "mailplane.checkImage" -}}
{{- if not .Values.image.repository -}}
{{- fail "image.repository: set it to the image you built from mailplane's Dockerfile and pushed to your registry (docker build -t registry.example.com/mailplane:0.1.0 . && docker push registry.example.com/mailplane:0.1.0); no public registry publishes it, so the chart names none by default" -}}
{{- end -}}
{{- end -}}

{{/* Labels of the pod template: the selector's and your own, never the chart's version or the app's
(a label there changes the template, and a chart upgrade would restart the mail server). */}}
{{- define "mailplane.podTemplateLabels" -}}
{{ include "mailplane.selectorLabels" . }}
app.kubernetes.io/component: server
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Every check of this file, for the StatefulSet to include once. */}}
{{- define "mailplane.checkProduction" -}}
{{- include "mailplane.checkImage" . -}}
{{- include "mailplane.checkMemory" . -}}
{{- include "mailplane.checkPdb" . -}}
{{- end -}}

{{/* The pod's ServiceAccount: serviceAccount.name, or the one the chart makes (serviceAccount.create), or the older serviceAccountName; "" for the namespace's default. */}}
{{- define "mailplane.serviceAccountName" -}}
{{- $sa := .Values.serviceAccount | default dict -}}
{{- if $sa.create -}}
{{- default (include "mailplane.fullname" .) $sa.name -}}
{{- else -}}
{{- default .Values.serviceAccountName $sa.name -}}
{{- end -}}
{{- end -}}

{{/* With persistence.fixOwnership, an init container that gives the data volume to the pod's user
(for storage that ignores fsGroup: hostPath, some NFS and CSI drivers), as a YAML list (empty
without). Called with (list . dataDir). */}}
{{- define "mailplane.ownershipInit" -}}
{{- $root := index . 0 -}}
{{- $dataDir := index . 1 -}}
{{- $out := list -}}
{{- if $root.Values.persistence.fixOwnership -}}
{{- $uid := int ($root.Values.podSecurityContext.runAsUser | default 10001) -}}
{{- $gid := int ($root.Values.podSecurityContext.runAsGroup | default $uid) -}}
{{- $fix := dict "name" "fix-ownership" "image" (include "mailplane.image" $root) "imagePullPolicy" $root.Values.image.pullPolicy -}}
{{- $_ := set $fix "command" (list "sh" "-c" (printf "find %s \\( ! -user %d -o ! -group %d \\) -exec chown -h %d:%d {} +" $dataDir $uid $gid $uid $gid)) -}}
{{- $_ := set $fix "securityContext" (dict "runAsUser" 0 "runAsGroup" 0 "runAsNonRoot" false "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "capabilities" (dict "drop" (list "ALL") "add" (list "CHOWN" "DAC_READ_SEARCH"))) -}}
{{- $_ := set $fix "volumeMounts" (list (dict "name" "data" "mountPath" $dataDir)) -}}
{{- $out = append $out $fix -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The listeners a Service carries: "main" all but those of the second Service (service.submission),
"submission" those. Called with (list . "main"|"submission"); a JSON list. */}}
{{- define "mailplane.serviceListeners" -}}
{{- $root := index . 0 -}}
{{- $which := index . 1 -}}
{{- $all := include "mailplane.listeners" $root | fromJsonArray -}}
{{- $second := $root.Values.service.submission | default dict -}}
{{- $names := ternary ($second.listeners | default list) list (and $second.enabled true) -}}
{{- $out := list -}}
{{- range $all -}}
{{- if eq (has .name $names) (eq $which "submission") -}}{{- $out = append $out . -}}{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Ingress rules for the SMTP listeners: those named in networkPolicy.listenerFrom from their own
peers (e.g. submission from the offices only), the others from smtpFrom (everyone when empty). */}}
{{- define "mailplane.smtpIngress" -}}
{{- $np := .Values.networkPolicy -}}
{{- $own := $np.listenerFrom | default dict -}}
{{- $rules := list -}}
{{- $rest := list -}}
{{- range include "mailplane.listeners" . | fromJsonArray -}}
{{- if hasKey $own .name -}}
{{- $rule := dict "ports" (list (dict "port" (int .port) "protocol" "TCP")) -}}
{{- $from := get $own .name -}}
{{- if $from }}{{ $_ := set $rule "from" $from }}{{ end -}}
{{- $rules = append $rules $rule -}}
{{- else -}}
{{- $rest = append $rest (dict "port" (int .port) "protocol" "TCP") -}}
{{- end -}}
{{- end -}}
{{- if $rest -}}
{{- $rule := dict "ports" $rest -}}
{{- with $np.smtpFrom }}{{ $_ := set $rule "from" . }}{{ end -}}
{{- $rules = prepend $rules $rule -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/* A peer for a host of the config: the address itself when it is one, else anywhere (a
NetworkPolicy cannot name a host). */}}
{{- define "mailplane.hostPeers" -}}
{{- $host := trimAll "[]" . -}}
{{- if regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" $host -}}
{{- toYaml (list (dict "ipBlock" (dict "cidr" (printf "%s/32" $host)))) -}}
{{- else if contains ":" $host -}}
{{- toYaml (list (dict "ipBlock" (dict "cidr" (printf "%s/128" $host)))) -}}
{{- else -}}
{{- toYaml (list (dict "ipBlock" (dict "cidr" "0.0.0.0/0")) (dict "ipBlock" (dict "cidr" "::/0"))) -}}
{{- end -}}
{{- end -}}

{{/* Egress rules derived from the config (networkPolicy.egressFromConfig): DNS, then the relay, or
port 25 (delivery.mxPort) and HTTPS for MTA-STS anywhere without one, the LDAP directory, the LMTP
server, the spam filter. Added to networkPolicy.egress. */}}
{{- define "mailplane.egressFromConfig" -}}
{{- $c := .Values.config | default dict -}}
{{- $np := .Values.networkPolicy -}}
{{- $rules := list -}}
{{- $dns := list (dict "port" 53 "protocol" "UDP") (dict "port" 53 "protocol" "TCP") -}}
{{- $rules = append $rules (dict "ports" $dns "to" ($np.dnsTo | default (list (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" "kube-system")) "podSelector" (dict "matchLabels" (dict "k8s-app" "kube-dns")))))) -}}
{{- range (dig "delivery" "dns" "servers" (list) $c) -}}
{{- $s := toString . -}}
{{- $host := $s -}}
{{- $port := "53" -}}
{{- if hasPrefix "[" $s -}}
{{- $host = regexReplaceAll "^\\[([^\\]]+)\\].*$" $s "${1}" -}}
{{- if regexMatch "\\]:[0-9]+$" $s }}{{ $port = regexFind "[0-9]+$" $s }}{{ end -}}
{{- else if regexMatch "^[0-9.]+:[0-9]+$" $s -}}
{{- $host = regexReplaceAll ":[0-9]+$" $s "" -}}
{{- $port = regexFind "[0-9]+$" $s -}}
{{- end -}}
{{- $rules = append $rules (dict "ports" (list (dict "port" (int $port) "protocol" "UDP") (dict "port" (int $port) "protocol" "TCP")) "to" (include "mailplane.hostPeers" $host | fromYamlArray)) -}}
{{- end -}}
{{- $relay := dig "relay" dict $c -}}
{{- if $relay.enabled -}}
{{- $rules = append $rules (dict "ports" (list (dict "port" (int ($relay.port | default 587)) "protocol" "TCP")) "to" (include "mailplane.hostPeers" (toString $relay.host) | fromYamlArray)) -}}
{{- else -}}
{{- $mx := int (dig "delivery" "mxPort" 25 $c) -}}
{{- $rules = append $rules (dict "ports" (list (dict "port" $mx "protocol" "TCP") (dict "port" 443 "protocol" "TCP")) "to" (include "mailplane.hostPeers" "" | fromYamlArray)) -}}
{{- end -}}
{{- with dig "accounts" "ldap" "url" "" $c -}}
{{- $u := urlParse . -}}
{{- $port := regexFind "[0-9]+$" $u.host | default (ternary "636" "389" (eq $u.scheme "ldaps")) -}}
{{- $rules = append $rules (dict "ports" (list (dict "port" (int $port) "protocol" "TCP")) "to" (include "mailplane.hostPeers" (regexReplaceAll ":[0-9]+$" $u.host "") | fromYamlArray)) -}}
{{- end -}}
{{- if eq (dig "mailboxes" "store" "maildir" $c) "lmtp" -}}
{{- $addr := toString (dig "mailboxes" "lmtp" "address" "" $c) -}}
{{- if regexMatch ":[0-9]+$" $addr -}}
{{- $rules = append $rules (dict "ports" (list (dict "port" (int (regexFind "[0-9]+$" $addr)) "protocol" "TCP")) "to" (include "mailplane.hostPeers" (regexReplaceAll ":[0-9]+$" $addr "") | fromYamlArray)) -}}
{{- end -}}
{{- end -}}
{{- with dig "inbound" "spamFilter" "url" "" $c -}}
{{- $u := urlParse . -}}
{{- $port := regexFind "[0-9]+$" $u.host | default (ternary "443" "80" (eq $u.scheme "https")) -}}
{{- $rules = append $rules (dict "ports" (list (dict "port" (int $port) "protocol" "TCP")) "to" (include "mailplane.hostPeers" (regexReplaceAll ":[0-9]+$" $u.host "") | fromYamlArray)) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}
