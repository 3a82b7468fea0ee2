// Stable codes of config problems. Programs (CI bots, editors) match on these;
// docs/configuration.md lists them, generated from this table.
export const ISSUE_CODES = {
  MP_FILE_UNREADABLE: 'A file (the config or one it references) cannot be read.',
  MP_YAML_SYNTAX: 'The file is not valid YAML, or a key appears twice in one mapping.',
  MP_NOT_A_MAPPING: 'The top level of the file must be a mapping of keys to values.',
  MP_UNKNOWN_KEY: 'A key that the schema does not define (a suggestion names the closest valid key).',
  MP_MISSING_KEY: 'A required key is absent.',
  MP_TYPE: 'A value has the wrong type (for example a string where an integer belongs).',
  MP_INVALID_VALUE: 'A value is outside what the schema allows (range, enumeration, pattern, format).',
  MP_DUPLICATE: 'Something that must be unique appears twice (domain, listener name, address:port, user).',
  MP_TLS_REQUIRED: 'A listener uses TLS but `smtp.tls` is not configured.',
  MP_TLS_FILE: 'A certificate or key cannot be parsed, or the key does not match the certificate.',
  MP_TLS_EXPIRED: 'The certificate has expired or is not yet valid.',
  MP_TLS_EXPIRING: 'The certificate expires within 30 days (warning).',
  MP_TLS_NAME: 'The certificate does not cover `hostname` (warning).',
  MP_TLS_EXAMPLE_KEY:
    'The private key in `smtp.tls.keyFile` is the example key published with mailplane (`examples/tls/dev.key`), with a `hostname` that is not a reserved example or test name: TLS with it protects nothing (warning).',
  MP_DKIM_KEY:
    'A DKIM private key (`dkim.keys[].privateKeyFile`) cannot be used: not a PEM private key, encrypted, a key type other than RSA or Ed25519, an RSA key under 1024 bits (RFC 8301: verifiers ignore its signatures), or an RSA key with a known weakness: primes close enough to factor it (CVE-2022-26320), the ROCA fingerprint (CVE-2017-15361), a broken public exponent, or parts that do not fit together.',
  MP_DKIM_KEY_WEAK: 'A DKIM RSA key has 1024 to 2047 bits: accepted, but 2048 is recommended (warning).',
  MP_DKIM_DOMAIN: 'A DKIM key names a domain that is not one of `domains`: mailplane signs only mail from its own domains.',
  MP_CIDR: 'An IP address or CIDR range cannot be parsed.',
  MP_OPEN_RELAY:
    'The trusted ranges (`smtp.auth.exemptClients`, and `lanNetworks` when `lanBypass` is on), alone or together, cover all of IPv4 or all of IPv6 (IPv4-mapped `::ffff:0:0/96` counts as IPv4), more than a /8 of public IPv4 (16,777,216 addresses, the largest block one organisation holds) or more than a /32 of public IPv6 (a whole ISP): that would make an open relay.',
  MP_PUBLIC_RANGE: 'A trusted range contains public addresses, or `lanNetworks` would make an open relay once `lanBypass` is turned on (warning).',
  MP_HASH_FORMAT: 'A password hash is in an unsupported or unrecognised format.',
  MP_PLAINTEXT_PASSWORD: 'A plain-text password appears in the file; use a hash or a secret file instead.',
  MP_SECRET_SOURCE: 'A secret is referenced wrongly (file missing, both or neither of passwordFile/passwordEnv, variable unset).',
  MP_RELAY_PORT: 'relay.secure does not fit relay.port (port 465 needs implicit TLS).',
  MP_NO_POSTMASTER: 'No user or alias receives postmaster@ (warning): its mail goes to <dataDir>/mail/postmaster.',
  MP_USERS_FILE: 'A line of accounts.local.usersFile is malformed.',
  MP_LDAP: 'The LDAP settings are inconsistent.',
  MP_ADDRESS: 'An IP address or listen address is malformed.',
  MP_PORT_CONFLICT: 'Two sockets of this config would bind the same address and port.',
  MP_SUBMISSION_NO_TLS: 'A submission listener has `tls: none` while `smtp.auth.required` is true: AUTH is offered only inside TLS, so nobody can log in there (warning).',
  MP_INBOUND: '`inbound` settings that cannot take effect as written, such as trusted ARC sealers while ARC is not checked (warning).',
  MP_OPS_TOKEN: 'The operations endpoint listens beyond loopback without `observability.tokenFile`, or the token is too short.',
  MP_MAILBOX_GROUP: '`storage.mailboxGroup` names no group in /etc/group, or (when run) mailplane is neither root nor a member of it; or (warning) `storage.mailboxMode` gives that group no access.',
  MP_MAILBOXES:
    '`mailboxes` settings that cannot work: `store: lmtp` without `lmtp.address`, an LMTP address that is neither host:port nor an absolute socket path, `dovecot.passwdFile` with LDAP accounts or inside the Maildirs; or (warning) `lmtp` given while `store` is `maildir`.',
  MP_DNS_SPF:
    "`dns.spfInclude` names more includes than SPF's limit of 10 DNS lookups leaves room for beside `mx` (error), or `relay.enabled` with no include: receivers fail SPF for the mail the relay sends (warning).",
  MP_DNS_ADDRESS: 'An address in `dns.addresses` is private, loopback, link-local or documentation space (warning): A, AAAA and PTR records name the address other servers connect to.',
  MP_MTA_STS: '`mtaSts.mode: enforce` while no mx listener offers STARTTLS: senders honouring the policy could not deliver to us.',
  MP_CLUSTER:
    '`cluster` settings that cannot work: a Redis URL that does not parse, a password or peer secret file that is empty or too short, a `peers.handoff` that is not host:port; or `cluster` (which implies several replicas) with `mailboxes.store: maildir`, which would split mailboxes between the replicas (use `store: lmtp`).',
  MP_PEER_LISTENER:
    'A `role: peer` listener that the internet could use: bound to all interfaces or a public address while neither `smtp.auth.exemptClients` nor `cluster.peers.secretFile` (with TLS on the listener) limits who may send there; or one with `tls: implicit`, which the hand-off client does not speak.',
} as const;

export type IssueCode = keyof typeof ISSUE_CODES;
