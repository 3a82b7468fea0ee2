{{/* DNS records for external-dns (dns.externalDns): the records `mailplane dns --format
external-dns` derives from the same config (src/dns/records.ts, src/dns/format.ts), rebuilt here
from the `config` value, in the same order, with the same TXT splitting and MTA-STS policy id.
Two deliberate differences, both because the chart knows more than the config: SRV records
carry the Service's port (service.ports) rather than the container port of the listener, and
(dns.externalDns.srvTargetTrailingDot, on by default) an absolute SRV target, as RFC 2782 and
the DNSEndpoint CRD of current external-dns require. test/helm-addons.test.ts runs the CLI on
the rendered config and compares. */}}

{{/* A domain as mailplane normalizes it: trimmed, no trailing dot, lower case. The chart has no
IDN conversion: a name with non-ASCII letters must be written in punycode (xn--…). */}}
{{- define "mailplane.dns.domain" -}}
{{- $d := . | toString | trim | trimSuffix "." | lower -}}
{{- if not (regexMatch "^[[:ascii:]]*$" $d) -}}
{{- fail (printf "dns.externalDns: %q has non-ASCII letters, which the chart cannot convert to the DNS form: write it in punycode (xn--...) in config" (toString .)) -}}
{{- end -}}
{{- $d -}}
{{- end -}}

{{/* A report address: the local part as written, the domain normalized. */}}
{{- define "mailplane.dns.mailbox" -}}
{{- $domain := regexFind "[^@]*$" . -}}
{{- printf "%s@%s" (trimSuffix (printf "@%s" $domain) .) (include "mailplane.dns.domain" $domain) -}}
{{- end -}}

{{/* A duration of the config (seconds, or "500ms", "30s", "5m", "2h", "7d") in whole seconds,
rounded down, as mtaSts.maxAge is read. */}}
{{- define "mailplane.dns.seconds" -}}
{{- if kindIs "string" . -}}
{{- $s := trim . -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s | float64 -}}
{{- $unit := trim (regexReplaceAll "^[0-9]+(\\.[0-9]+)?" $s "") -}}
{{- $ms := get (dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 "d" 86400000.0) $unit -}}
{{- div (round (mulf $num $ms) 0 | int64) 1000 -}}
{{- else -}}
{{- . | int64 -}}
{{- end -}}
{{- end -}}

{{/* A hexadecimal group ("ffff") as a number. */}}
{{- define "mailplane.dns.hex" -}}
{{- $digits := dict "0" 0 "1" 1 "2" 2 "3" 3 "4" 4 "5" 5 "6" 6 "7" 7 "8" 8 "9" 9 "a" 10 "b" 11 "c" 12 "d" 13 "e" 14 "f" 15 -}}
{{- $n := 0 -}}
{{- range regexSplit "" (lower .) -1 -}}{{- $n = add (mul $n 16) (get $digits .) -}}{{- end -}}
{{- $n -}}
{{- end -}}

{{/* An address of dns.addresses in mailplane's canonical form: IPv4 as written, IPv6 with the
longest run of zero groups compressed (RFC 5952), an IPv4-mapped IPv6 address as IPv4. */}}
{{- define "mailplane.dns.address" -}}
{{- $a := . | toString | trim | lower -}}
{{- if not (contains ":" $a) -}}
{{- $a -}}
{{- else -}}
{{- $v4 := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" $a -}}
{{- if $v4 -}}
{{- $b := splitList "." $v4 -}}
{{- $a = printf "%s%x:%x" (trimSuffix $v4 $a) (add (mul (atoi (index $b 0)) 256) (atoi (index $b 1))) (add (mul (atoi (index $b 2)) 256) (atoi (index $b 3))) -}}
{{- end -}}
{{- $parts := splitList "::" $a -}}
{{- $groups := list -}}
{{- if ne (index $parts 0) "" -}}{{- $groups = splitList ":" (index $parts 0) -}}{{- end -}}
{{- if eq (len $parts) 2 -}}
{{- $tail := list -}}
{{- if ne (index $parts 1) "" -}}{{- $tail = splitList ":" (index $parts 1) -}}{{- end -}}
{{- $missing := sub 8 (add (len $groups) (len $tail)) | int -}}
{{- if lt $missing 0 -}}{{- fail (printf "dns.addresses: %q is not an IPv6 address" (toString .)) -}}{{- end -}}
{{- range until $missing -}}{{- $groups = append $groups "0" -}}{{- end -}}
{{- $groups = concat $groups $tail -}}
{{- end -}}
{{- if ne (len $groups) 8 -}}{{- fail (printf "dns.addresses: %q is not an IPv6 address" (toString .)) -}}{{- end -}}
{{- $g := list -}}
{{- range $groups -}}{{- $g = append $g (regexReplaceAll "^0+([0-9a-f])" . "${1}") -}}{{- end -}}
{{- if and (eq (join ":" (slice $g 0 5)) "0:0:0:0:0") (eq (index $g 5) "ffff") -}}
{{- $hi := include "mailplane.dns.hex" (index $g 6) | int -}}
{{- $lo := include "mailplane.dns.hex" (index $g 7) | int -}}
{{- printf "%d.%d.%d.%d" (div $hi 256) (mod $hi 256) (div $lo 256) (mod $lo 256) -}}
{{- else -}}
{{- $best := -1 -}}{{- $bestLen := 0 -}}{{- $start := -1 -}}
{{- range $i, $x := $g -}}
{{- if eq $x "0" -}}
{{- if lt $start 0 -}}{{- $start = $i -}}{{- end -}}
{{- $run := add (sub $i $start) 1 -}}
{{- if and (gt $run $bestLen) (gt $run 1) -}}{{- $best = $start -}}{{- $bestLen = $run -}}{{- end -}}
{{- else -}}
{{- $start = -1 -}}
{{- end -}}
{{- end -}}
{{- if lt $best 0 -}}
{{- join ":" $g -}}
{{- else -}}
{{- printf "%s::%s" (join ":" (slice $g 0 $best)) (join ":" (slice $g (add $best $bestLen | int))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A TXT value as an external-dns target: itself up to 255 bytes, else its 255-byte
character-strings, each quoted (as `mailplane dns` writes a DKIM RSA key). */}}
{{- define "mailplane.dns.txt" -}}
{{- if le (len .) 255 -}}
{{- . -}}
{{- else -}}
{{- $v := . -}}
{{- $strings := list -}}
{{- range $i := until (div (add (len $v) 254) 255 | int) -}}
{{- $s := substr (mul $i 255 | int) (mul (add $i 1) 255 | int) $v -}}
{{- $strings = append $strings (printf "\"%s\"" ($s | replace "\\" "\\\\" | replace "\"" "\\\"")) -}}
{{- end -}}
{{- join " " $strings -}}
{{- end -}}
{{- end -}}

{{/* Whether one domain is the other or lies under it: "true" or "". */}}
{{- define "mailplane.dns.sameTree" -}}
{{- $a := index . 0 -}}{{- $b := index . 1 -}}
{{- if or (eq $a $b) (hasSuffix (printf ".%s" $b) $a) (hasSuffix (printf ".%s" $a) $b) -}}true{{- end -}}
{{- end -}}

{{/* The DNSEndpoint specs, as JSON: [{zone, endpoints: [{dnsName, recordType, recordTTL, targets}]}],
one per zone in the order `mailplane dns` prints them. */}}
{{- define "mailplane.dns.endpoints" -}}
{{- $cfg := include "mailplane.addons.config" . | fromJson -}}
{{- $ext := .Values.dns.externalDns -}}
{{- $host := include "mailplane.dns.domain" (required "config.hostname is required" $cfg.hostname) -}}
{{- $domains := list -}}
{{- range $cfg.domains -}}
{{- $d := include "mailplane.dns.domain" . -}}
{{- if not (has $d $domains) -}}{{- $domains = append $domains $d -}}{{- end -}}
{{- end -}}
{{- $dns := $cfg.dns | default dict -}}
{{- $ttl := dig "ttl" 3600 $dns | int64 -}}
{{- $spf := list "v=spf1" "mx" -}}
{{- range $dns.spfInclude | default list -}}{{- $spf = append $spf (printf "include:%s" (include "mailplane.dns.domain" .)) -}}{{- end -}}
{{- $spfValue := append $spf "-all" | join " " -}}
{{- $rua := "" -}}
{{- with dig "dmarc" "reportAddress" "" $dns -}}{{- $rua = include "mailplane.dns.mailbox" . -}}{{- end -}}
{{- $tlsRpt := $rua -}}
{{- with $dns.tlsRptAddress -}}{{- $tlsRpt = include "mailplane.dns.mailbox" . -}}{{- end -}}
{{- $dmarc := printf "v=DMARC1; p=%s" (dig "dmarc" "policy" "none" $dns) -}}
{{- if $rua -}}{{- $dmarc = printf "%s; rua=mailto:%s" $dmarc $rua -}}{{- end -}}
{{- $mtaSts := $cfg.mtaSts | default dict -}}
{{- $policy := printf "version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %s\r\n" ($mtaSts.mode | default "testing") $host (include "mailplane.dns.seconds" ($mtaSts.maxAge | default "7d")) -}}
{{- $policyId := sha256sum $policy | trunc 32 -}}
{{- /* the first submission listener of each kind that is not bound to loopback, at its Service port */ -}}
{{- $services := dict -}}
{{- range include "mailplane.listeners" . | fromJsonArray -}}
{{- $tls := .tls | default "starttls" -}}
{{- $addr := .address | default "" | toString -}}
{{- $loopback := and $addr (or (eq $addr "localhost") (eq $addr "::1") (hasPrefix "127." $addr) (regexMatch "(?i)^::ffff:127\\." $addr)) -}}
{{- if and (eq .role "submission") (has $tls (list "starttls" "implicit")) (not $loopback) -}}
{{- $kind := ternary "submissions" "submission" (eq $tls "implicit") -}}
{{- if not (hasKey $services $kind) -}}{{- $_ := set $services $kind (get $.Values.service.ports .name | default .port | int) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $dot := ternary "" "." (eq (toString $ext.srvTargetTrailingDot) "false") -}}
{{- /* DKIM TXT values given in the values (Helm cannot read the public key out of a Secret) */ -}}
{{- $given := list -}}
{{- range $i, $r := $ext.dkimRecords | default list -}}
{{- $d := include "mailplane.dns.domain" (required (printf "dns.externalDns.dkimRecords[%d].domain is required" $i) $r.domain) -}}
{{- if not (has $d $domains) -}}
{{- fail (printf "dns.externalDns.dkimRecords[%d]: %s is not one of config.domains" $i $d) -}}
{{- end -}}
{{- $value := required (printf "dns.externalDns.dkimRecords[%d].value is required" $i) $r.value | toString | trim -}}
{{- if not (hasPrefix "v=DKIM1;" $value) -}}
{{- fail (printf "dns.externalDns.dkimRecords[%d].value: give the TXT value itself, starting with \"v=DKIM1;\" (what `mailplane dns --format json` shows as the record's value), not %q" $i (trunc 40 $value)) -}}
{{- end -}}
{{- $given = append $given (dict "domain" $d "selector" (lower (required (printf "dns.externalDns.dkimRecords[%d].selector is required" $i) $r.selector)) "value" $value) -}}
{{- end -}}
{{- $keys := dig "dkim" "keys" (list) $cfg | default list -}}
{{- $records := list -}}
{{- range $d := $domains -}}
{{- $records = append $records (dict "name" $d "type" "MX" "target" (printf "10 %s" $host)) -}}
{{- $records = append $records (dict "name" $d "type" "TXT" "target" (include "mailplane.dns.txt" $spfValue)) -}}
{{- $selectors := list -}}
{{- range $k := $keys -}}
{{- if eq (include "mailplane.dns.domain" $k.domain) $d -}}
{{- $sel := lower $k.selector -}}
{{- $selectors = append $selectors $sel -}}
{{- $value := "" -}}
{{- range $given -}}{{- if and (eq .domain $d) (eq .selector $sel) -}}{{- $value = .value -}}{{- end -}}{{- end -}}
{{- if $value -}}
{{- $records = append $records (dict "name" (printf "%s._domainkey.%s" $sel $d) "type" "TXT" "target" (include "mailplane.dns.txt" $value)) -}}
{{- else if ne (toString $ext.requireDkimRecords) "false" -}}
{{- fail (printf "dns.externalDns: config.dkim.keys names the key %s of %s, but dns.externalDns.dkimRecords has no TXT value for it: Helm cannot read a public key out of the Secret. Add { domain: %s, selector: %s, value: \"v=DKIM1; k=...; p=...\" } (the value `mailplane dkim keygen` printed, or `kubectl exec <pod> -- node /app/bin/mailplane.js dns --config /etc/mailplane/config/mailserver.yaml --format json` shows), or set dns.externalDns.requireDkimRecords: false and publish DKIM another way" $sel $d $d $sel) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* keys not in config.dkim.keys (yet, or any more): published too, for a rotation */ -}}
{{- range $given -}}
{{- if and (eq .domain $d) (not (has .selector $selectors)) -}}
{{- $records = append $records (dict "name" (printf "%s._domainkey.%s" .selector $d) "type" "TXT" "target" (include "mailplane.dns.txt" .value)) -}}
{{- end -}}
{{- end -}}
{{- $records = append $records (dict "name" (printf "_dmarc.%s" $d) "type" "TXT" "target" (include "mailplane.dns.txt" $dmarc)) -}}
{{- $records = append $records (dict "name" (printf "_mta-sts.%s" $d) "type" "TXT" "target" (printf "v=STSv1; id=%s" $policyId)) -}}
{{- if $tlsRpt -}}
{{- $records = append $records (dict "name" (printf "_smtp._tls.%s" $d) "type" "TXT" "target" (include "mailplane.dns.txt" (printf "v=TLSRPTv1; rua=mailto:%s" $tlsRpt))) -}}
{{- end -}}
{{- range $service := list "submissions" "submission" -}}
{{- $target := "0 0 0 ." -}}
{{- if hasKey $services $service -}}
{{- $target = printf "%d 1 %d %s%s" (ternary 0 10 (eq $service "submissions")) (get $services $service) $host $dot -}}
{{- end -}}
{{- $records = append $records (dict "name" (printf "_%s._tcp.%s" $service $d) "type" "SRV" "target" $target) -}}
{{- end -}}
{{- end -}}
{{- /* RFC 7489 section 7.1: another of our domains takes the DMARC reports of these */ -}}
{{- if $rua -}}
{{- $rd := regexFind "[^@]*$" $rua -}}
{{- if has $rd $domains -}}
{{- range $d := $domains -}}
{{- if not (include "mailplane.dns.sameTree" (list $d $rd)) -}}
{{- $records = append $records (dict "name" (printf "%s._report._dmarc.%s" $d $rd) "type" "TXT" "target" "v=DMARC1") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not (has $host $domains) -}}
{{- $records = append $records (dict "name" $host "type" "TXT" "target" "v=spf1 a -all") -}}
{{- end -}}
{{- range $dns.addresses | default list -}}
{{- $address := include "mailplane.dns.address" . -}}
{{- $records = append $records (dict "name" $host "type" (ternary "AAAA" "A" (contains ":" $address)) "target" $address) -}}
{{- end -}}
{{- /* grouped by zone (the longest of our domains the name lies in, else the name itself), then
by name and type, in the order of first appearance */ -}}
{{- $zones := list -}}
{{- $byZone := dict -}}
{{- range $r := $records -}}
{{- $zone := $r.name -}}
{{- $best := 0 -}}
{{- range $d := $domains -}}
{{- if and (or (eq $r.name $d) (hasSuffix (printf ".%s" $d) $r.name)) (gt (len $d) $best) -}}{{- $zone = $d -}}{{- $best = len $d -}}{{- end -}}
{{- end -}}
{{- if not (hasKey $byZone $zone) -}}
{{- $zones = append $zones $zone -}}
{{- $_ := set $byZone $zone (list) -}}
{{- end -}}
{{- $endpoints := get $byZone $zone -}}
{{- $found := false -}}
{{- range $e := $endpoints -}}
{{- if and (eq $e.dnsName $r.name) (eq $e.recordType $r.type) -}}
{{- $_ := set $e "targets" (append $e.targets $r.target) -}}
{{- $found = true -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- $_ := set $byZone $zone (append $endpoints (dict "dnsName" $r.name "recordType" $r.type "recordTTL" $ttl "targets" (list $r.target))) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $zones -}}{{- $out = append $out (dict "zone" . "endpoints" (get $byZone .)) -}}{{- end -}}
{{- toJson $out -}}
{{- end -}}
