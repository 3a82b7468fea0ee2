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
  inbound?: InboundConfig;
  dkim?: DkimConfig;
  observability?: ObservabilityConfig;
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
   * `mx`: inbound mail from the internet for our domains (no AUTH needed to deliver to local users). `submission`: mail clients of our users, who must authenticate when `smtp.auth.required` is true.
   */
  role: 'mx' | 'submission';
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
   * A message with more Received headers than this (ours included) is taken to be looping: refused with 554 5.4.6 at the end of DATA when it has a local recipient, bounced from the queue otherwise.
   */
  maxReceivedHeaders?: number;
  dns?: DeliveryDnsConfig;
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
 * Checks of mail arriving on mx listeners from clients that are neither authenticated nor trusted. Off by default; turn on the checks you want. This release only records the results: an `Authentication-Results` header (RFC 8601) on the copies for local mailboxes and the metric `mailplane_inbound_auth_total`; nothing is rejected or filed differently because of them (DMARC enforcement comes next). DNS lookups use `delivery.dns.servers` and `delivery.dns.timeout`. All the checks of one message together are bounded by twice `delivery.dns.timeout` (at most 10 s): whatever has not finished then is `temperror`, and the message goes on.
 */
export interface InboundConfig {
  checks?: InboundChecksConfig;
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
   * DMARC (RFC 7489) of the From: domain: `monitor` records the result, `off` skips it. Enforcing the domain's policy is not implemented yet.
   */
  dmarc?: 'monitor' | 'off';
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
