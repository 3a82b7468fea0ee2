// Every policy reply mailplane sends, in one place: code, enhanced status code, text.
// Clients and monitoring match on these; the README's policy table quotes them.
import type { RejectionReason } from '../ops/metrics.js';

export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    readonly enhanced: string,
    text: string,
    /** metric reason, when this reply refuses something */
    readonly reason: RejectionReason | null,
  ) {
    super(`${enhanced} ${text}`);
  }
}

const r = (code: number, enhanced: string, text: string, reason: RejectionReason | null) => new SmtpReply(code, enhanced, text, reason);

export const Replies = {
  unknownRecipient: (addr: string) => r(550, '5.1.1', `<${addr}>: Recipient address rejected: User unknown`, 'unknown_recipient'),
  relayDenied: (addr: string) => r(554, '5.7.1', `<${addr}>: Relay access denied`, 'relay_denied'),
  authRequired: () => r(530, '5.7.0', 'Authentication required', 'auth_required'),
  /** MAIL on a peer listener from a client that is neither exempt nor logged in with the peer secret */
  peerOnly: () => r(530, '5.7.0', 'Authentication required: this listener takes mail from the other replicas only', 'auth_required'),
  encryptionRequired: () => r(538, '5.7.11', 'Encryption required for requested authentication mechanism', 'tls_required'),
  authFailed: () => r(535, '5.7.8', 'Authentication credentials invalid', 'auth_failed'),
  authUnavailable: () => r(454, '4.7.0', 'Temporary authentication failure, try again later', 'temporary_failure'),
  authIdentity: () => r(535, '5.7.8', 'Authorization identity must match the login', 'auth_failed'),
  senderMismatch: (addr: string) => r(553, '5.7.1', `<${addr}>: Sender address rejected: not owned by the authenticated user`, 'sender_mismatch'),
  tooBig: (limit: number) => r(552, '5.3.4', `Message size exceeds fixed maximum message size of ${limit} bytes`, 'size'),
  lineTooLong: (limit: number) => r(554, '5.6.0', `Message contains a line longer than ${limit} octets`, 'line_length'),
  tooManyFailures: () => r(421, '4.7.0', 'Too many failed authentication attempts, try again later', 'rate_limited'),
  /** AUTH from a locked-out address where the session stays open (mx: mail to local users goes on) */
  authLockedOut: () => r(454, '4.7.0', 'Too many failed authentication attempts, try again later', 'rate_limited'),
  sendRate: (what: 'messages' | 'recipients', limit: number, window: string) => r(451, '4.7.1', `Sending rate limit reached (${limit} ${what} per ${window}), try again later`, 'send_rate'),
  tooManyRejectedRecipients: () => r(421, '4.7.0', 'Too many rejected recipients, closing connection', 'rejected_recipients'),
  tooManyConnections: () => r(421, '4.7.0', 'Too many connections, try again later', 'connection_limit'),
  tooManyRecipients: () => r(452, '4.5.3', 'Too many recipients', 'too_many_recipients'),
  recipientUnavailable: () => r(451, '4.4.3', 'Recipient lookup failed temporarily, try again later', 'temporary_failure'),
  storageFull: () => r(452, '4.3.1', 'Insufficient system storage, try again later', 'storage'),
  storageError: () => r(451, '4.3.0', 'Local error in processing, try again later', 'storage'),
  senderUnavailable: () => r(451, '4.3.0', 'Sender address check failed temporarily, try again later', 'temporary_failure'),
  mailLoop: (limit: number) => r(554, '5.4.6', `Too many Received headers (more than ${limit}): mail loop`, 'mail_loop'),
  heloSyntax: (verb: string) => r(501, '5.5.4', `Syntax: ${verb} hostname`, 'syntax'),
  heloName: () => r(501, '5.5.4', 'Bad hostname syntax', 'syntax'),
  textAfterPath: () => r(501, '5.5.2', 'Syntax error: unexpected text after the address', 'syntax'),
  parameterNotSupported: (keyword: string) => r(555, '5.5.4', `Parameter not supported: ${keyword.slice(0, 64)}`, 'syntax'),
  nonAsciiAddress: () => r(553, '5.6.7', 'Non-ASCII address not permitted without SMTPUTF8', 'syntax'),
  badAddress: (addr: string) => r(501, '5.1.3', `<${addr}>: Bad address syntax`, 'syntax'),
  badParameter: (keyword: string) => r(501, '5.5.4', `Bad value of ${keyword.slice(0, 64)}`, 'syntax'),
  dmarcReject: (domain: string) => r(550, '5.7.1', `Message rejected: the From: domain ${domain} publishes a DMARC policy of reject and this message fails its authentication`, 'dmarc'),
  spoofedOwnDomain: (domain: string) =>
    r(550, '5.7.1', `Message rejected: From: claims ${domain}, a domain of this server, but the message has neither a valid DKIM signature nor an SPF pass for it`, 'own_domain'),
  authChecksUnavailable: () => r(451, '4.7.0', 'Sender authentication could not be checked (DNS), try again later', 'temporary_failure'),
  spamReject: (message: string | null) => r(554, '5.7.1', `Message rejected as spam${message ? `: ${message}` : ''}`, 'spam'),
  spamSoftReject: (message: string | null, greylist: boolean) =>
    r(451, '4.7.1', `${greylist ? 'Greylisted' : 'Message deferred by the spam filter'}${message ? `: ${message}` : ''}, try again later`, 'spam'),
  spamFilterUnavailable: () => r(451, '4.7.1', 'Spam filter unavailable, try again later', 'temporary_failure'),
  accepted: (id: string) => `2.0.0 Ok: queued as ${id}`,
} as const;
