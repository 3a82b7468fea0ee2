{{/* mailboxes.dovecot: Dovecot as a second container of the mailplane pod. It reads the Maildirs
mailplane writes on the data volume (config.mailboxes.store: maildir) and logs users in with
the passwd-file mailplane writes on every applied generation; IMAPS 993 and POP3S 995 on the
Service, with the certificate of `tls`. Its dovecot.conf is made of the blocks of
docs/dovecot.md (test/helm-addons.test.ts checks that they stay the same, and runs it). */}}

{{/* Sets in the config what Dovecot beside mailplane needs: include "mailplane.dovecot.applyConfig" (list $ $config) */}}
{{- define "mailplane.dovecot.applyConfig" -}}
{{- $root := index . 0 -}}
{{- $config := index . 1 -}}
{{- $psc := $root.Values.podSecurityContext | default dict -}}
{{- if or (kindIs "invalid" $psc.fsGroup) (kindIs "invalid" $psc.runAsUser) -}}
{{- fail "mailboxes.dovecot: podSecurityContext needs runAsUser and fsGroup: Dovecot reads and writes the mail as runAsUser (mail_uid) and reads the passwd-file through the group fsGroup (storage.mailboxGroup)" -}}
{{- end -}}
{{- $gid := $psc.fsGroup | int -}}
{{- if gt (int $root.Values.replicas) 1 -}}
{{- fail "mailboxes.dovecot: Dovecot runs in the mailplane pod, over that pod's Maildirs: with several replicas each would hold part of the mail; keep replicas: 1" -}}
{{- end -}}
{{- if eq (toString (dig "accounts" "type" "local" $config)) "ldap" -}}
{{- fail "mailboxes.dovecot: the chart's Dovecot logs users in with the passwd-file mailplane writes for local accounts; with accounts.type: ldap configure Dovecot's LDAP passdb (docs/dovecot.md) in an image of your own" -}}
{{- end -}}
{{- $storage := $config.storage | default dict -}}
{{- if and (not (kindIs "invalid" $storage.mailboxGroup)) (ne (toString $storage.mailboxGroup) (toString $gid)) -}}
{{- fail (printf "config.storage.mailboxGroup: %v, but with mailboxes.dovecot it is the pod's fsGroup (%d), the group Dovecot reads the passwd-file through; remove it from config" $storage.mailboxGroup $gid) -}}
{{- end -}}
{{- $_ := set $storage "mailboxGroup" $gid -}}
{{- if not $storage.mailboxMode -}}
{{- $_ := set $storage "mailboxMode" (dict "files" "0640" "folders" "2770") -}}
{{- end -}}
{{- $_ := set $config "storage" $storage -}}
{{- $dataDir := include "mailplane.dataDir" $root | trimSuffix "/" -}}
{{- $mailboxes := $config.mailboxes | default dict -}}
{{- if and $mailboxes.store (ne (toString $mailboxes.store) "maildir") -}}
{{- fail (printf "config.mailboxes.store: %s, but the Dovecot of mailboxes.dovecot reads the Maildirs mailplane writes: use maildir (or leave it out)" (toString $mailboxes.store)) -}}
{{- end -}}
{{- $dovecot := $mailboxes.dovecot | default dict -}}
{{- $passwd := $dovecot.passwdFile | default (printf "%s/dovecot/passwd" $dataDir) | toString -}}
{{- if not (and (isAbs $passwd) (hasPrefix (printf "%s/" $dataDir) (clean $passwd))) -}}
{{- fail (printf "config.mailboxes.dovecot.passwdFile: %q must be an absolute path in the data volume (%s/...), which both containers mount" $passwd $dataDir) -}}
{{- end -}}
{{- $_ := set $dovecot "passwdFile" (clean $passwd) -}}
{{- $_ := set $mailboxes "dovecot" $dovecot -}}
{{- $_ := set $config "mailboxes" $mailboxes -}}
{{- end -}}

{{/* dovecot.conf: the blocks of docs/dovecot.md ("Store maildir"; "IMAPS on 993, POP3S on 995")
with the pod's paths and ids, after what the container needs. */}}
{{- define "mailplane.dovecot.conf" -}}
{{- $cfg := include "mailplane.addons.config" . | fromJson -}}
{{- $d := .Values.mailboxes.dovecot -}}
{{- $uid := .Values.podSecurityContext.runAsUser | int -}}
{{- $gid := .Values.podSecurityContext.fsGroup | int -}}
# dovecot.conf of the mailplane chart (mailboxes.dovecot): the Dovecot container of the mailplane
# pod. The blocks of docs/dovecot.md with the pod's paths and ids; nothing else is read.

# the container: its writable folders are emptyDirs, it logs to its output
base_dir = /run/dovecot
state_dir = /var/lib/dovecot
log_path = /dev/stderr

# docs/dovecot.md, store maildir: the users mailplane writes (config.mailboxes.dovecot.passwdFile),
# their Maildirs as homes. `mailplane` is the pod's user and group in this container (its
# /etc/passwd and /etc/group): mail is read and written as podSecurityContext.runAsUser ({{ $uid }}),
# and the auth process (user dovecot) reads the passwd-file through the group
# podSecurityContext.fsGroup ({{ $gid }}), which is config.storage.mailboxGroup.
passdb {
  driver = passwd-file
  args = scheme=CRYPT username_format=%n {{ $cfg.mailboxes.dovecot.passwdFile }}
}
userdb {
  driver = passwd-file
  args = username_format=%n {{ $cfg.mailboxes.dovecot.passwdFile }}
}
service auth {
  extra_groups = mailplane
}
mail_location = maildir:~
mail_uid = mailplane
mail_gid = mailplane
first_valid_uid = 100

# docs/dovecot.md, IMAPS on 993{{ if $d.pop3 }}, POP3S on 995{{ end }}: the certificate of `tls` (mailplane's)
protocols = $protocols imap{{ if $d.pop3 }} pop3{{ end }}
ssl = required
ssl_cert = </etc/mailplane/tls/tls.crt
ssl_key = </etc/mailplane/tls/tls.key
ssl_min_protocol = TLSv1.2
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 993
    ssl = yes
  }
}
{{- if $d.pop3 }}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 995
    ssl = yes
  }
}
{{- end }}
{{- with $d.extraConfig }}

# mailboxes.dovecot.extraConfig
{{ . }}
{{- end }}
{{ end -}}

{{/* The container's entrypoint (under tini): Dovecot in the foreground, and `doveadm reload`
when the kubelet has swapped in a renewed certificate or a changed dovecot.conf (the ..data
symlink of their volumes changes); Dovecot does not watch its files. */}}
{{- define "mailplane.dovecot.run" -}}
#!/bin/sh
set -u
stamp() { readlink /etc/dovecot/..data; readlink /etc/mailplane/tls/..data; }
dovecot -F -c /etc/dovecot/dovecot.conf &
pid=$!
trap 'kill -TERM "$pid"; wait "$pid"; exit $?' TERM INT
last=$(stamp)
while kill -0 "$pid" 2>/dev/null; do
  sleep "${RELOAD_CHECK_SECONDS:-60}" &
  wait $!
  now=$(stamp)
  if [ "$now" != "$last" ]; then
    echo "dovecot: the certificate or dovecot.conf changed: doveadm reload" >&2
    doveadm -c /etc/dovecot/dovecot.conf reload && last=$now
  fi
done
wait "$pid"
{{ end -}}

{{/* The Dovecot container of the StatefulSet's pod (nothing without mailboxes.dovecot.enabled). */}}
{{- define "mailplane.dovecot.container" -}}
{{- if .Values.mailboxes.dovecot.enabled -}}
{{- $d := .Values.mailboxes.dovecot -}}
{{- if not (include "mailplane.tlsSecretName" .) -}}
{{- fail "mailboxes.dovecot: IMAPS and POP3S need the certificate of `tls` (existingSecret, certManager or selfSigned)" -}}
{{- end -}}
- name: dovecot
  image: {{ include "mailplane.addons.image" $d.image }}
  imagePullPolicy: {{ $d.image.pullPolicy }}
  command: [/usr/bin/tini, --, /bin/sh, /etc/dovecot/run.sh]
  env:
    - name: RELOAD_CHECK_SECONDS
      value: {{ $d.reloadCheckSeconds | quote }}
  ports:
    - name: imaps
      containerPort: 993
      protocol: TCP
    {{- if $d.pop3 }}
    - name: pop3s
      containerPort: 995
      protocol: TCP
    {{- end }}
  livenessProbe:
    tcpSocket:
      port: imaps
    initialDelaySeconds: 10
    periodSeconds: 20
  # Dovecot's master runs as root to start its processes as other users: logins as dovenull
  # (chrooted), authentication as dovecot (with the group fsGroup: extra_groups), mail as the
  # pod's user (mail_uid); only the capabilities for that, and for 993/995 (test/helm-addons.test.ts
  # runs it with these and no others)
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
      add: [CHOWN, SETUID, SETGID, KILL, SYS_CHROOT, NET_BIND_SERVICE]
  {{- with $d.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: dovecot-config
      mountPath: /etc/dovecot
      readOnly: true
    - name: tls
      mountPath: /etc/mailplane/tls
      readOnly: true
    - name: data
      mountPath: {{ include "mailplane.dataDir" . }}
    - name: dovecot-run
      mountPath: /run/dovecot
    - name: dovecot-state
      mountPath: /var/lib/dovecot
    - name: dovecot-tmp
      mountPath: /tmp
    # the image's users and groups, and `mailplane` (the init container dovecot-users); static
    # files, so subPath is fine here
    - name: dovecot-users
      mountPath: /etc/passwd
      subPath: passwd
      readOnly: true
    - name: dovecot-users
      mountPath: /etc/group
      subPath: group
      readOnly: true
{{- end -}}
{{- end -}}

{{/* Names for the pod's user and group in the Dovecot container (Dovecot's settings want names):
its /etc/passwd and /etc/group are the image's with `mailplane` added, written by an init
container into an emptyDir. */}}
{{- define "mailplane.dovecot.initContainers" -}}
{{- if .Values.mailboxes.dovecot.enabled -}}
{{- $d := .Values.mailboxes.dovecot -}}
{{- $uid := .Values.podSecurityContext.runAsUser | int -}}
{{- $gid := .Values.podSecurityContext.fsGroup | int -}}
- name: dovecot-users
  image: {{ include "mailplane.addons.image" $d.image }}
  imagePullPolicy: {{ $d.image.pullPolicy }}
  command:
    - /bin/sh
    - -c
    - >-
      cp /etc/passwd /etc/group /users/ &&
      echo 'mailplane:x:{{ $gid }}:' >> /users/group &&
      echo 'mailplane:x:{{ $uid }}:{{ $gid }}:mailplane:/nonexistent:/usr/sbin/nologin' >> /users/passwd
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    requests: { cpu: 10m, memory: 16Mi }
    limits: { memory: 32Mi }
  volumeMounts:
    - name: dovecot-users
      mountPath: /users
{{- end -}}
{{- end -}}

{{/* Its volumes (besides tls and data, which mailplane mounts too). */}}
{{- define "mailplane.dovecot.volumes" -}}
{{- if .Values.mailboxes.dovecot.enabled -}}
- name: dovecot-config
  configMap:
    name: {{ include "mailplane.fullname" . }}-dovecot
- name: dovecot-users
  emptyDir:
    sizeLimit: 1Mi
- name: dovecot-run
  emptyDir: {}
- name: dovecot-state
  emptyDir: {}
- name: dovecot-tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}
{{- end -}}

{{/* IMAPS and POP3S on the Service. */}}
{{- define "mailplane.dovecot.servicePorts" -}}
{{- if .Values.mailboxes.dovecot.enabled -}}
{{- $d := .Values.mailboxes.dovecot -}}
{{- range include "mailplane.listeners" . | fromJsonArray -}}
{{- if has (include "mailplane.portName" .name) (list "imaps" "pop3s") -}}
{{- fail (printf "config.smtp.listeners: the listener %s takes the Service port name of Dovecot's %s; rename it" .name (include "mailplane.portName" .name)) -}}
{{- end -}}
{{- end -}}
- name: imaps
  port: {{ $d.servicePorts.imaps }}
  targetPort: 993
  protocol: TCP
{{- if $d.pop3 }}
- name: pop3s
  port: {{ $d.servicePorts.pop3s }}
  targetPort: 995
  protocol: TCP
{{- end }}
{{- end -}}
{{- end -}}
