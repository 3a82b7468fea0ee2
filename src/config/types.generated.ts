/* Generated from schema/mailserver.schema.json by `npm run generate`. Do not edit by hand. */
/* eslint-disable */

/**
 * The whole desired state of one mailplane server. Validate with `mailplane validate FILE`.
 */
export interface MailserverConfig {
  /**
   * Version of this file's format. Must be 1.
   */
  version: 1;
  /**
   * The server's own fully qualified name: used in the SMTP banner, the EHLO reply and Received headers. It should match the certificate and the reverse DNS of the public address.
   */
  hostname: string;
  /**
   * Mail domains this server receives mail for. The first is the primary domain. Every user receives mail at user@<each domain> into one mailbox. Matched case-insensitively; internationalized names are accepted and compared in their ASCII (punycode) form.
   *
   * @minItems 1
   */
  domains: [string, ...string[]];
  smtp?: SmtpConfig;
  accounts?: AccountsConfig;
  relay?: RelayConfig;
  delivery?: DeliveryConfig;
  storage?: StorageConfig;
  mailboxes?: MailboxesConfig;
  inbound?: InboundConfig;
  dkim?: DkimConfig;
  dns?: DnsConfig;
  mtaSts?: MtaStsConfig;
  observability?: ObservabilityConfig;
  cluster?: ClusterConfig;
}
/**
 * SMTP service: listeners, TLS, authentication policy and limits.
 */
export interface SmtpConfig {
  /**
   * When false no listener is opened; mail already queued is still delivered.
   */
  enabled?: boolean;
  /**
   * Largest message accepted, as bytes or a string with a unit: KB, MB, GB (×1000) or KiB, MiB, GiB (×1024). Advertised with SIZE; larger messages get 552 5.3.4 and nothing is stored.
   */
  maxMessageSize?: number | string;
  tls?: TlsConfig;
  /**
   * Sockets to serve SMTP on. Default: mx on 25 (starttls), submission on 587 (starttls), submissions on 465 (implicit).
   */
  listeners?: ListenerConfig[];
  auth?: AuthPolicyConfig;
  limits?: SmtpLimitsConfig;
  /**
   * How long sessions may keep running on a listener that is being removed or rebound, or when the server stops, before they are closed.
   */
  drainGrace?: number | string;
}
/**
 * Certificate and key used by every listener with `tls: starttls` or `tls: implicit`. Required when any listener uses TLS. Both files are watched: a renewed certificate applies without a restart.
 */
export interface TlsConfig {
  /**
   * PEM certificate, optionally followed by its chain. Relative paths resolve against the folder of this file.
   */
  certFile: string;
  /**
   * PEM private key matching certFile. Relative paths resolve against the folder of this file.
   */
  keyFile: string;
}
export interface ListenerConfig {
  /**
   * Unique name of the listener; used as the `listener` label of metrics and in /status.
   */
  name: string;
  /**
   * TCP port.
   */
  port: number;
  /**
   * IP address to bind. Default: all interfaces.
   */
  address?: string;
  /**
   * `mx`: inbound mail from the internet for our domains (no AUTH needed to deliver to local users). `submission`: mail clients of our users, who must authenticate when `smtp.auth.required` is true. `peer`: cluster-internal, where the other replicas hand their queues over (`mailplane queue handoff`, see docs/scaling.md): only clients in `smtp.auth.exemptClients`, or those that log in with `cluster.peers.secretFile` (AUTH PLAIN as `peer`, inside STARTTLS), may send here, to any recipient, without sending rates or spam scanning; everyone else gets 530 5.7.0 at MAIL. `validate` refuses a peer listener on all interfaces or a public address that neither exempt clients nor a peer secret protect, and one with `tls: implicit`.
   */
  role: 'mx' | 'submission' | 'peer';
  /**
   * `none`: plain text only, AUTH never offered. `starttls`: plain text with STARTTLS. `implicit`: TLS from the first byte ("SMTP-SSL", usually port 465).
   */
  tls?: 'none' | 'starttls' | 'implicit';
  /**
   * Expect a PROXY protocol v1 header from the load balancer in front of this listener, so that policy sees the real client address. Only enable it behind a proxy that always sends one.
   */
  proxyProtocol?: boolean;
}
/**
 * Who must authenticate, and who is trusted without it.
 */
export interface AuthPolicyConfig {
  /**
   * Authorization required for mail clients: on submission listeners, MAIL FROM before AUTH gets 530 5.7.0 unless the client is exempt. When false, unauthenticated clients may still send only to local recipients; relaying always needs AUTH or a trusted network.
   */
  required?: boolean;
  /**
   * IP addresses or CIDR ranges that never need AUTH and may relay (for example the webmail host). Ranges in IPv4-mapped form (`::ffff:10.0.0.0/104`) mean the IPv4 range (`10.0.0.0/8`). `exemptClients` and, with `lanBypass` on, `lanNetworks` are judged together: covering all of IPv4 or all of IPv6, more than a /8 of public IPv4, or more than a /32 of public IPv6 is refused as an open relay (MP_OPEN_RELAY); smaller public ranges get a warning (MP_PUBLIC_RANGE).
   */
  exemptClients?: string[];
  /**
   * Ignore authorization for LAN connections: clients in `lanNetworks` are treated like exempt clients.
   */
  lanBypass?: boolean;
  /**
   * What LAN means for `lanBypass`, as IP addresses or CIDR ranges. With `lanBypass` on, these ranges and `exemptClients` are judged together for the open-relay check (see `exemptClients`).
   */
  lanNetworks?: string[];
  /**
   * Failed AUTH attempts from one client address within `failureWindow` before that address is locked out for `lockoutDuration`: its connections to submission listeners get 421 4.7.0, and AUTH from it is refused everywhere (454 4.7.0 on mx listeners, where mail to local users still goes on). Addresses in `exemptClients`, and in `lanNetworks` under `lanBypass`, are never locked out; failures from them, like all failures, count against the login name, whose further attempts are slowed down. `mailplane unlock` lifts a lockout; reloads keep them.
   */
  maxFailures?: number;
  /**
   * Window over which failed AUTH attempts are counted.
   */
  failureWindow?: number | string;
  /**
   * How long a client address that exceeded `maxFailures` is locked out.
   */
  lockoutDuration?: number | string;
}
/**
 * Bounds that protect the server from misbehaving clients.
 */
export interface SmtpLimitsConfig {
  /**
   * Recipients accepted per message; further RCPT commands get 452 4.5.3.
   */
  maxRecipients?: number;
  /**
   * Longest line accepted in a message, in octets without the CRLF (RFC 5322 allows 998). A message with a longer line gets 554 5.6.0 and nothing is stored.
   */
  maxLineLength?: number;
  /**
   * Concurrent connections per listener; more get 421 and are closed.
   */
  maxConnections?: number;
  /**
   * Concurrent connections from one client address, across all listeners; more get 421 and are closed.
   */
  maxConnectionsPerClient?: number;
  /**
   * A session that sends nothing for this long is closed.
   */
  idleTimeout?: number | string;
  /**
   * A command line must be complete this long after the server's previous reply (time the server spends on a command does not count); a client that trickles bytes slower is disconnected with 421 (the idle timeout alone would never fire).
   */
  commandTimeout?: number | string;
  /**
   * A message (DATA) must be received completely within this time after the 354 reply.
   */
  dataTimeout?: number | string;
  sendRate?: SendRateConfig;
  rejectedRecipients?: RejectedRecipientsConfig;
}
/**
 * How much one authenticated user, or one trusted client address sending without AUTH, may send within `window`, so that a stolen password cannot turn the server into a spam cannon. Over it, MAIL or RCPT gets 451 4.7.1 (the client retries later), with a log line and a `send_rate` rejection in the metrics. Counted per server process, from accepted messages; unauthenticated mail to local users (mx) is not limited by this.
 */
export interface SendRateConfig {
  /**
   * Messages accepted per user or trusted address within `window`; 0 = no limit.
   */
  messages?: number;
  /**
   * Recipients (local and remote) accepted per user or trusted address within `window`; 0 = no limit.
   */
  recipients?: number;
  /**
   * The sliding window the counts cover.
   */
  window?: number | string;
}
/**
 * Directory-harvest defence: RCPTs refused in one session (unknown user, relay denied). After `delayAfter` of them each further refusal is answered only after `delay`; after `disconnectAfter` the session gets 421 4.7.0 and is closed.
 */
export interface RejectedRecipientsConfig {
  /**
   * Refused RCPTs in a session answered at once; the ones after wait `delay`.
   */
  delayAfter?: number;
  /**
   * Wait before each refusal beyond `delayAfter` (Postfix's error sleep); the client's command timeout does not run meanwhile.
   */
  delay?: number | string;
  /**
   * Refused RCPTs after which the session is answered 421 4.7.0 and closed; 0 = never.
   */
  disconnectAfter?: number;
  /**
   * With `cluster.redis`: refused RCPTs are also counted per client address across sessions and replicas, over this window from the first of them; a session is delayed and closed by the larger of its own count and its address's count. Without Redis (or while it is down) only the session's own count applies.
   */
  window?: number | string;
}
/**
 * Where users and their passwords come from.
 */
export interface AccountsConfig {
  /**
   * `local`: users listed here and in `usersFile`. `ldap`: users from a directory (requires `accounts.ldap`).
   */
  type?: 'local' | 'ldap';
  local?: LocalAccountsConfig;
  ldap?: LdapAccountsConfig;
}
/**
 * Local users. Used when `type` is local.
 */
export interface LocalAccountsConfig {
  /**
   * Users. Each logs in as `name` or `name@<any domain>` and receives mail at name@ and alias@ every domain, into one Maildir.
   */
  users?: LocalUserConfig[];
  /**
   * Optional file of extra users, one `name:hash` per line (`#` starts a comment), such as a mounted Secret. Watched: changes apply without a restart. Relative paths resolve against the folder of this file.
   */
  usersFile?: string;
}
export interface LocalUserConfig {
  /**
   * Login and local part; letters, digits, dot, underscore and hyphen; matched case-insensitively.
   */
  name: string;
  /**
   * Password hash: bcrypt ($2a$, $2b$, $2y$), SHA512-CRYPT ($6$), SHA256-CRYPT ($5$) or argon2id. Produce one with `mailplane hash-password`. Never a plain-text password.
   */
  passwordHash: string;
  /**
   * Extra local parts delivered to this user at every domain.
   */
  aliases?: string[];
}
/**
 * Directory settings. Required when `type` is ldap.
 */
export interface LdapAccountsConfig {
  /**
   * Directory URL, `ldap://host:port` or `ldaps://host:port`.
   */
  url: string;
  /**
   * Upgrade an `ldap://` connection with StartTLS before anything else is sent.
   */
  startTls?: boolean;
  /**
   * PEM file of the certificate authorities that sign the directory's certificate; when given, only these are trusted. Default: the system's.
   */
  caFile?: string;
  /**
   * Service account used to search for users. Without it, searches are anonymous.
   */
  bindDn?: string;
  /**
   * File holding the service account's password (trailing newline ignored). Watched like other referenced files.
   */
  bindPasswordFile?: string;
  /**
   * Search base for users.
   */
  userBase: string;
  /**
   * Search filter; `{user}` is replaced by the escaped local part or login name.
   */
  userFilter?: string;
  /**
   * Attributes that hold further addresses of a user (full addresses at any of our domains); a recipient whose local part matches one of them is delivered to that user.
   */
  aliasAttributes?: string[];
  /**
   * Bound on every directory operation; a slower directory counts as down (AUTH 454, RCPT 451).
   */
  timeout?: number | string;
  /**
   * How long a recipient found in the directory is remembered. Passwords are never cached. 0 disables the cache.
   */
  cacheTtl?: number | string;
  /**
   * Directory connections kept open for searches.
   */
  poolSize?: number;
}
/**
 * Send outbound mail through a smarthost instead of to each recipient domain's MX.
 */
export interface RelayConfig {
  /**
   * true: every outbound message goes through `host`. false: direct delivery to each recipient domain's MX.
   */
  enabled?: boolean;
  /**
   * Smarthost name or address.
   */
  host?: string;
  /**
   * Smarthost port: usually 465 (implicit TLS) or 587 (STARTTLS).
   */
  port?: number;
  /**
   * Always use a secure connection: implicit TLS on 465, mandatory STARTTLS on any other port, with certificate verification. false: STARTTLS when the relay offers it.
   */
  secure?: boolean;
  /**
   * Speak TLS from the first byte ("SMTPS"). Leave it out to decide by port: implicit TLS on 465, STARTTLS otherwise. Only needed for a relay that serves implicit TLS on another port.
   */
  implicitTls?: boolean;
  /**
   * PEM file of certificate authorities trusted for the relay's certificate, in addition to the system's (for a relay with an internal CA).
   */
  caFile?: string;
  auth?: RelayAuthConfig;
}
/**
 * Relay account. The password comes from exactly one of `passwordFile` or `passwordEnv`.
 */
export interface RelayAuthConfig {
  /**
   * Relay account name.
   */
  username: string;
  /**
   * File holding the relay password (trailing newline ignored). Watched like other referenced files.
   */
  passwordFile?: string;
  /**
   * Environment variable holding the relay password.
   */
  passwordEnv?: string;
}
/**
 * Outbound delivery: retries, lifetime, concurrency and DNS.
 */
export interface DeliveryConfig {
  /**
   * Delay before the first retry of a deferred message; doubled after each failed attempt (with jitter) up to maxRetryDelay.
   */
  minRetryDelay?: number | string;
  /**
   * Longest delay between two attempts.
   */
  maxRetryDelay?: number | string;
  /**
   * How long a message may stay in the queue; recipients still undelivered after that are bounced to the sender.
   */
  maxLifetime?: number | string;
  /**
   * Delivery attempts in flight at the same time, over all destinations (with a relay: connections' worth of messages to it).
   */
  concurrency?: number;
  /**
   * Delivery attempts in flight at the same time to one destination (a recipient domain's mail exchangers), so that a slow or unreachable domain cannot take the slots of the others (Postfix starts at 5 too). With a relay, `concurrency` alone applies. A destination that cannot be reached at all is not tried again until the failed attempt's retry is due.
   */
  destinationConcurrency?: number;
  /**
   * Bytes of mail being delivered at the same time, added up over the attempts in flight (each counts its message's size), besides the count limit `concurrency`: the next message waits until it fits, and one larger than this goes alone. Message bodies stream from disk, so this bounds disk and network work and what an attempt may hold; the Helm chart counts it in the memory a config can need. Bytes or a size with a unit (KB, MB, KiB, MiB…).
   */
  maxBytesInFlight?: number | string;
  /**
   * After a start, what was queued before it goes out gradually: one delivery attempt at first, one more every `startupRamp` / `concurrency`, all of `concurrency` once this time is over; a restart on a full queue (after a relay outage, say) never starts every due message at once. Mail accepted after the start is not counted (it waits in due order behind that backlog, as always). 0: at full speed at once.
   */
  startupRamp?: number | string;
  /**
   * A message with more Received headers than this (ours included) is taken to be looping: refused with 554 5.4.6 at the end of DATA when it has a local recipient, bounced from the queue otherwise.
   */
  maxReceivedHeaders?: number;
  dns?: DeliveryDnsConfig;
  /**
   * Honour the recipient domain's MTA-STS policy (RFC 8461) on direct MX delivery: the policy is looked up through `dns.servers` and fetched over HTTPS, then cached as long as it allows. A domain in `enforce` mode gets its mail only over TLS with a valid certificate, from an MX host its policy names; otherwise the mail waits in the queue (the reason in `mailplane queue list`) until it can, or expires. `testing` mode delivers as without a policy and counts what enforcement would have refused. A policy that cannot be fetched, with none cached, counts as none. Relay delivery is not affected (the relay decides).
   */
  mtaSts?: boolean;
  /**
   * TCP port for direct MX delivery. Always 25 on the internet; change it only in a test lab, to point delivery at a test server.
   */
  mxPort?: number;
  /**
   * Bound on connecting to a relay or MX host and on its greeting.
   */
  connectTimeout?: number | string;
}
/**
 * Resolvers for MX lookups of direct delivery.
 */
export interface DeliveryDnsConfig {
  /**
   * Resolver addresses (`ip` or `ip:port`, `[ipv6]:port`) for split-horizon setups. Default: the system's resolvers.
   */
  servers?: string[];
  /**
   * Bound on one DNS lookup; a timeout defers the message.
   */
  timeout?: number | string;
}
/**
 * Where mail is kept.
 */
export interface StorageConfig {
  /**
   * Data directory: Maildirs under mail/<user>/{tmp,new,cur} (Dovecot: `maildir:<dataDir>/mail/%n`), the outbound queue under queue/. Relative paths resolve against the folder of this file.
   */
  dataDir?: string;
  /**
   * Message bodies held in memory, across all sessions, while they are received: a message up to 1 MiB stays in memory while this budget allows, anything else streams into a spool file under dataDir/spool/ as it arrives. Bytes or a size with a unit (KB, MB, KiB, MiB…).
   */
  memoryBudget?: number | string;
  /**
   * The group every Maildir folder and message file mailplane creates is given to, so that an IMAP server running as another user in this group (Dovecot's `mail_gid`) can read and manage the mail; `dataDir/mail` itself is given to it too. A group name (looked up in /etc/group when the config is loaded: an unknown name is an error) or a numeric gid (for groups from a directory service). mailplane must run as root or as a member of the group. Unset: files and folders keep mailplane's own group. See docs/install.md.
   */
  mailboxGroup?: string | number;
  mailboxMode?: MailboxModeConfig;
}
/**
 * Permission bits of the Maildir folders and message files mailplane creates, as octal strings in quotes (YAML reads 0640 without quotes as the number 640). mailplane keeps full access for itself. Folders and files made before a change keep their mode.
 */
export interface MailboxModeConfig {
  /**
   * Mode of message files. Default "0600", or "0640" (the group reads) with mailboxGroup. The owner must be able to read and write.
   */
  files?: string;
  /**
   * Mode of Maildir folders (`<user>/`, `tmp/`, `new/`, `cur/`, and `dataDir/mail` with mailboxGroup). Default "0700", or "2770" with mailboxGroup: the group may also move, flag and delete mail (what an IMAP server does), and the setgid bit (2) gives what it creates the group too. "2750" lets the group only read (Dovecot then needs INDEX and CONTROL elsewhere). The owner must have full access.
   */
  folders?: string;
}
/**
 * Where local mail is stored, and how the IMAP/POP3 server (Dovecot) learns the accounts. See docs/dovecot.md.
 */
export interface MailboxesConfig {
  /**
   * `maildir`: mailplane writes each local copy into `<dataDir>/mail/<user>` itself, where Dovecot reads it (storage.mailboxGroup). `lmtp`: local copies are queued like outbound mail and delivered to the LMTP server at `lmtp.address` (Dovecot's mail store), one LMTP transaction per message for all its local recipients, retried with backoff while it refuses them temporarily or cannot be reached, bounced for a recipient it refuses permanently. Either way a message is answered 250 only once it is durable.
   */
  store?: 'maildir' | 'lmtp';
  lmtp?: LmtpConfig;
  dovecot?: DovecotConfig;
}
/**
 * The LMTP server local mail goes to with `store: lmtp` (RFC 2033). Recipients are named by login (`RCPT TO:<alice>`, aliases resolved; mail for the junk folder as `<alice+Junk>`: Dovecot's `recipient_delimiter = +` and `lmtp_save_to_detail_mailbox = yes`). Mail queued for LMTP keeps being delivered here after a switch back to `maildir`.
 */
export interface LmtpConfig {
  /**
   * `host:port` (`127.0.0.1:24`, `[::1]:24`, `dovecot.mail.svc:24`) or the absolute path of a unix socket (`/var/spool/postfix/private/dovecot-lmtp`, `/run/dovecot/lmtp`). No TLS: keep it on loopback, a unix socket or a private network.
   */
  address: string;
}
/**
 * Dovecot as the IMAP/POP3 server of the local accounts (accounts.type: local).
 */
export interface DovecotConfig {
  /**
   * A passwd-file for Dovecot's passdb and userdb that mailplane writes on every applied generation: one line per local user, `name:{SCHEME}hash` in Dovecot's scheme syntax (`{BLF-CRYPT}`, `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{ARGON2ID}`), with the Maildir `<dataDir>/mail/<user>` as home with `store: maildir`. Written atomically (temporary file, fsync, rename), mode 0640, group storage.mailboxGroup when set; content unchanged is not rewritten. Dovecot rereads it on the next login: a user added, removed or given a new password in this file can (or can no longer) log in to IMAP as soon as the reload has applied. A write that fails fails the reload (the previous generation keeps serving). Needs `accounts.type: local`. Relative paths resolve against the folder of this file.
   */
  passwdFile?: string;
}
/**
 * Checks of mail arriving on mx listeners from clients that are neither authenticated nor trusted. Off by default; turn on the checks you want. Results go into one `Authentication-Results` header (RFC 8601) on the copies for local mailboxes and the metric `mailplane_inbound_auth_total`; `checks.dmarc: enforce` and `checks.ownDomains` decide what happens to mail that fails (refused with 550 5.7.1, or filed in `junkFolder`). Any `Authentication-Results` field claiming our host name that arrives from an untrusted client is removed, whatever the checks. DNS lookups use `delivery.dns.servers` and `delivery.dns.timeout`. All the checks of one message together are bounded by twice `delivery.dns.timeout` (at most 10 s): whatever has not finished then is `temperror`. A temperror never refuses mail, but where a rule must be enforced (see `checks.dmarc` and `checks.ownDomains`) it answers 451 4.7.0, so that the sender tries again later.
 */
export interface InboundConfig {
  checks?: InboundChecksConfig;
  spamFilter?: SpamFilterConfig;
  /**
   * The Maildir++ folder (`.<name>/` in the user's Maildir, created when first needed) that mail quarantined by `checks.dmarc: enforce` or `checks.ownDomains: junk` is filed into. IMAP servers such as Dovecot show it as a folder of that name. Letters, digits, `_` and `-` only (a dot would make a subfolder).
   */
  junkFolder?: string;
}
/**
 * Which authentication checks run on incoming mail.
 */
export interface InboundChecksConfig {
  /**
   * Check SPF (RFC 7208) of the MAIL FROM domain (or HELO name for the null sender) against the client address.
   */
  spf?: boolean;
  /**
   * Report DKIM signature results (RFC 6376). DMARC, when on, verifies the signatures whatever this says.
   */
  dkim?: boolean;
  /**
   * Validate an ARC chain (RFC 8617) and report it.
   */
  arc?: boolean;
  /**
   * DMARC (RFC 7489) of the From: domain. `monitor` records the result only. `enforce` applies the domain's published policy to mail that fails: `p=reject` is refused after DATA with 550 5.7.1 (nothing stored), `p=quarantine` is delivered into `inbound.junkFolder`, `p=none` is delivered. When the policy cannot be fetched (DNS failure: temperror) and the message has no aligned pass, enforce answers 451 4.7.0 and the sender retries; a message that passes is never held up. A passing ARC chain sealed by one of `arcTrustedSealers` may override a failure (see there). `off` skips DMARC.
   */
  dmarc?: 'enforce' | 'monitor' | 'off';
  /**
   * Mail whose From: is one of our `domains`, arriving from an untrusted, unauthenticated client, with neither a valid DKIM signature of that domain (or a subdomain) nor an SPF pass for a MAIL FROM (or HELO) in it, is spoofed: `reject` refuses it after DATA with 550 5.7.1, `junk` files it into `inbound.junkFolder`, `off` leaves it alone. This holds whether or not we publish a DMARC record. Our own users send through submission (authenticated), so only outside services that send as our domain need SPF or DKIM set up for it. When SPF and DKIM could not be checked (DNS failure), `reject` answers 451 4.7.0 and `junk` delivers normally.
   */
  ownDomains?: 'reject' | 'junk' | 'off';
  /**
   * Domains whose ARC seals (RFC 8617) are trusted, such as mailing lists and forwarders that re-sign what they pass on. A message that fails DMARC or the own-domain check is delivered normally instead when its ARC chain validates (needs `arc: true`), the newest ARC set was signed by one of these domains (its ARC-Message-Signature d=, exactly), and that sealer's ARC-Authentication-Results recorded dmarc=pass, or a dkim=pass or spf=pass of the From: domain. Counted as action `arc_override`.
   */
  arcTrustedSealers?: string[];
}
/**
 * Spam and malware scanning by Rspamd (its HTTP protocol, /checkv2), during the SMTP transaction: after DATA and before the reply, so spam is refused rather than bounced later. Every message from an mx listener is scanned (trusted clients too, sent with `MTA-Tag: trusted` so Rspamd's settings can treat them apart), and with `scanSubmissions` every message from an authenticated user. Rspamd's action decides: `reject` → 554 5.7.1 with Rspamd's message; `soft reject` and `greylist` → 451 4.7.1; `add header` → `X-Spam: Yes` and delivery into `inbound.junkFolder`; `rewrite subject` → the subject Rspamd gives; `no action` → delivered. Copies for local mailboxes get `X-Spamd-Result` and `X-Spam-Score`, and the headers Rspamd asks to add or remove. For authenticated users and trusted clients only `reject` and `soft reject` act. Absent: no scanning.
 */
export interface SpamFilterConfig {
  /**
   * The scanner. Only `rspamd`.
   */
  type: 'rspamd';
  /**
   * Base URL of Rspamd's normal worker (or proxy), such as http://127.0.0.1:11333; mailplane posts to `<url>/checkv2`. http or https.
   */
  url: string;
  /**
   * File holding the password sent in Rspamd's `Password` header (trailing newline ignored), for a worker or proxy that requires one. Never logged.
   */
  passwordFile?: string;
  /**
   * The longest a scan may take: a message never waits longer for Rspamd. A slower or unreachable Rspamd counts as an error (`onError`).
   */
  timeout?: number | string;
  /**
   * When Rspamd cannot be reached, times out or answers something unusable: `accept` delivers the message marked `X-Spam-Unscanned` (local copies); `tempfail` answers 451 4.7.1 so the sender retries later.
   */
  onError?: 'accept' | 'tempfail';
  /**
   * Messages larger than this are not scanned; their local copies are marked `X-Spam-Unscanned`. Bytes, or a size with a unit like `smtp.maxMessageSize`.
   */
  maxSize?: number | string;
  /**
   * Scan the mail of authenticated users too, so that a stolen account is stopped by Rspamd's `reject` (554 5.7.1, logged with the user) before it sends.
   */
  scanSubmissions?: boolean;
}
/**
 * DKIM signing of outbound mail (RFC 6376). Every message that leaves through the relay or direct to MX and whose From: header domain has keys here is signed with each of them (relaxed/relaxed, the header fields RFC 6376 recommends, From signed once more than it occurs so no From can be added); mail from any other domain (forwarded, bounced) is not. Key files are read and checked like TLS files and swapped on reload; `mailplane dkim keygen` makes a key and prints the DNS record to publish.
 */
export interface DkimConfig {
  /**
   * The signing keys. Several keys for one domain (an RSA and an Ed25519 key, or the old and the new selector during a rotation) give several signatures.
   */
  keys?: DkimKeyConfig[];
}
export interface DkimKeyConfig {
  /**
   * The From: domain whose mail this key signs (d=); must be one of `domains`.
   */
  domain: string;
  /**
   * The selector (s=): the public key is published as a TXT record at `<selector>._domainkey.<domain>`. Letters, digits and hyphens, dot-separated labels (RFC 6376).
   */
  selector: string;
  /**
   * PEM private key: RSA (at least 1024 bits, 2048 recommended; under 2048 is a warning) or Ed25519. A secret: never printed; watched, and swapped on reload (a key that does not load keeps the previous one and reports why).
   */
  privateKeyFile: string;
}
/**
 * The DNS records this server needs, as `mailplane dns` prints them (zone file, JSON or external-dns resources) and `mailplane dns check` compares them with live DNS: for each domain MX, SPF, DKIM (from `dkim.keys`), DMARC, MTA-STS, TLS-RPT and the mail-client SRV records; for the host name its SPF, and A/AAAA and PTR when `addresses` is given. Nothing here changes what the server does. See docs/dns.md.
 */
export interface DnsConfig {
  /**
   * Domains whose SPF records each domain's SPF record includes (`v=spf1 mx include:<domain> -all`): the relay's (its documentation names it, e.g. `_spf.relay.example.net`) and any other service that sends mail from our domains. With `relay.enabled` and no include, validation warns: receivers would fail SPF for everything the relay sends. SPF allows 10 DNS lookups; `mx` takes one and every include at least one (`mailplane dns check` counts them through the live records).
   */
  spfInclude?: string[];
  dmarc?: DmarcConfig;
  /**
   * Where sending servers report TLS failures (TLS-RPT, RFC 8460): the `_smtp._tls.<domain>` record `v=TLSRPTv1; rua=mailto:<address>`. Default: `dmarc.reportAddress`; with neither, no `_smtp._tls` record is published (`mailplane dns` says so).
   */
  tlsRptAddress?: string;
  /**
   * The public IPv4 and IPv6 addresses of this server (those other servers connect to). When given, `mailplane dns` lists the A/AAAA records of `hostname` and, as advice, the PTR record each address needs (set by whoever holds the address, usually the hosting provider), and `dns check` checks them. A private or documentation address is a warning.
   */
  addresses?: string[];
  /**
   * TTL of every record printed, in seconds.
   */
  ttl?: number;
}
/**
 * The DMARC record (RFC 7489) published at `_dmarc.<domain>` for each domain.
 */
export interface DmarcConfig {
  /**
   * What receivers should do with mail that claims one of our domains in From: but passes neither aligned SPF nor aligned DKIM (`p=`). The default is `none` because publishing the record must not lose mail: with `none` receivers only report, so a service sending in our name that nobody set up SPF or DKIM for, or mail forwarded without DKIM, is not sent to spam or refused. Move to `quarantine` (spam folder), then `reject`, once the reports to `reportAddress` show that all our mail passes.
   */
  policy?: 'none' | 'quarantine' | 'reject';
  /**
   * Where receivers send aggregate reports (`rua=mailto:<address>`), such as `dmarc-reports@example.com`; written without `mailto:`. Reports for a domain sent to an address at another domain need that domain's consent (RFC 7489 section 7.1): when it is one of `domains`, `mailplane dns` prints the `<domain>._report._dmarc.<its domain>` records that give it. Default: no reports.
   */
  reportAddress?: string;
}
/**
 * MTA-STS (RFC 8461): the policy that tells sending servers to deliver to our domains only over TLS, to `hostname`, with a valid certificate. `mailplane dns` prints the `_mta-sts.<domain>` TXT record whose id is derived from the policy, so it changes exactly when the policy does. The ops endpoint (`observability.listen`) serves the policy at `/.well-known/mta-sts.txt` for requests with `Host: mta-sts.<domain>` of any of our domains: route `https://mta-sts.<domain>/` there (an Ingress or a reverse proxy holding a certificate for that name), only that path.
 */
export interface MtaStsConfig {
  /**
   * `testing`: senders deliver as before and report TLS problems (to `dns.tlsRptAddress`). `enforce`: senders that honour MTA-STS deliver only over TLS to `hostname` with a valid certificate, and otherwise keep the mail queued (needs an mx listener with `tls: starttls`). `none`: withdraws a policy published before (keep it published for `maxAge` before removing the records). Start with `testing`; enforce once the reports show no failures.
   */
  mode?: 'none' | 'testing' | 'enforce';
  /**
   * How long senders may keep the policy (`max_age`, whole seconds, at most 365.25 days). RFC 8461 recommends weeks or more once in `enforce`.
   */
  maxAge?: number | string;
}
/**
 * The operations HTTP listener.
 */
export interface ObservabilityConfig {
  /**
   * `address:port` serving /metrics, /healthz, /readyz, /status and POST /-/reload. /status and /-/reload need the bearer token of `tokenFile` on any address other than loopback.
   */
  listen?: string;
  /**
   * File holding the bearer token (at least 16 characters, trailing newline ignored) that GET /status and POST /-/reload require as `Authorization: Bearer TOKEN`. Required when `listen` is not a loopback address; when set, required on loopback too. /metrics, /healthz and /readyz stay open. Watched like other referenced files.
   */
  tokenFile?: string;
  /**
   * How mail addresses appear in the log lines of accepted messages, recipient outcomes and refusals: `full`, or `redact` (the domain and a keyed hash of the local part, the same for the same address, so lines still join up; the key is `<dataDir>/log-redact.key`).
   */
  logAddresses?: 'full' | 'redact';
}
/**
 * Several replicas of this config (docs/scaling.md): the abuse limits they share in Redis, and the peer their queues are handed to when a replica leaves. Either part implies several replicas, so `mailboxes.store` must then be `lmtp` (a Maildir store would split mailboxes between replicas).
 */
export interface ClusterConfig {
  redis?: ClusterRedisConfig;
  peers?: ClusterPeersConfig;
}
/**
 * Redis holding the failed-AUTH lockouts, sending rates, per-client connection counts and harvest counters of all replicas, so that N replicas allow what one allows. Only counters with an expiry are kept there, never mail or queue state. When Redis cannot be reached or answers slower than `timeout`, each replica decides on its own counters at once (logged, `mailplane_cluster_redis_up 0`) and returns to Redis when it answers again.
 */
export interface ClusterRedisConfig {
  /**
   * `redis://host:port/db`, or `rediss://` for TLS (certificate verified against the system CAs). A user name in the URL is used; put the password in `passwordFile`, not in the URL.
   */
  url: string;
  /**
   * File holding the Redis password (trailing newline ignored). Never logged, never shown in /status. Watched like other referenced files.
   */
  passwordFile?: string;
  /**
   * The longest an SMTP decision waits for Redis; slower counts as Redis being down (the replica's own counters decide).
   */
  timeout?: number | string;
  /**
   * Prefix of every key mailplane writes, so that several deployments can share one Redis.
   */
  keyPrefix?: string;
}
/**
 * Where a replica's queue goes when the replica leaves for good (`mailplane queue handoff`, run by the Helm chart's preStop hook): every queued message with its undelivered recipients, original sender and arrival time, over SMTP to a `role: peer` listener of the other replicas, each deleted here only after the peer's 250.
 */
export interface ClusterPeersConfig {
  /**
   * `host:port` of the other replicas' peer listener, such as a Kubernetes Service `mailplane-smtp-peers:2525`.
   */
  handoff: string;
  /**
   * File holding a shared secret (at least 16 characters, trailing newline ignored): the hand-off logs in with it (AUTH PLAIN, user `peer`, only inside TLS whose certificate is this config's own or valid for `hostname`), and peer listeners accept it. Without it only `smtp.auth.exemptClients` may use a peer listener. Never logged.
   */
  secretFile?: string;
}
