// MAIL and RCPT command lines, checked against RFC 5321's grammar and against what we advertised
// before smtp-server parses them (engine.ts hands the line here, then the canonical line to the
// library). The library accepts any parameter, takes text after the path for parameters, and
// leaves a quoted local part quoted; here:
//   * text glued to the path (`<a@b>junk`), or a bare word that is no parameter: 501 5.5.2
//   * a parameter we did not advertise (anything after HELO; on RCPT, anything: no DSN): 555 5.5.4
//   * a non-ASCII address in a transaction without SMTPUTF8 (RFC 6531 §3.4): 553 5.6.7
//   * `"alice"@example.com` becomes `alice@example.com` (a quoted string that is a dot-atom)
//   * RCPT's domainless `<postmaster>` (any case) becomes postmaster@<primary domain> (§4.5.1)
// Anything else that is malformed is left to the library's own 501 replies.
import { Replies, type SmtpReply } from './replies.js';

export interface CommandContext {
  /** the client greeted with EHLO (after HELO no extension, and so no parameter, exists) */
  readonly esmtp: boolean;
  /** TLS is active: AUTH is advertised, and with it MAIL's AUTH= parameter (RFC 4954 §5) */
  readonly secure: boolean;
  /** RCPT only: this transaction's MAIL carried SMTPUTF8 */
  readonly smtputf8: boolean;
  /** the first configured domain: where a domainless <postmaster> goes (null: left as it is) */
  readonly primaryDomain: string | null;
  /** another replica on a peer listener: MAIL may carry X-MAILPLANE-ARRIVED */
  readonly peer?: boolean;
}

export type CheckedCommand = { readonly ok: true; readonly line: string } | { readonly ok: false; readonly reply: SmtpReply };

/** MAIL parameters of the extensions we advertise after EHLO (8BITMIME, SMTPUTF8, SIZE, AUTH inside TLS). */
const MAIL_PARAMETERS = new Set(['SIZE', 'BODY', 'SMTPUTF8']);
/** The MAIL parameter of the hand-off between replicas (session.ts): accepted from peers only. */
const PEER_PARAMETER = 'X-MAILPLANE-ARRIVED';
/**
 * Keywords registered for MAIL or RCPT (IANA "SMTP Service Extensions"): a bare one is a
 * parameter we may not support (555); any other bare word after the path is junk (501).
 */
const REGISTERED = new Set([
  'SIZE',
  'BODY',
  'SMTPUTF8',
  'AUTH',
  'RET',
  'ENVID',
  'NOTIFY',
  'ORCPT',
  'REQUIRETLS',
  'MT-PRIORITY',
  'BY',
  'HOLDFOR',
  'HOLDUNTIL',
  'RRVS',
  'CONPERM',
  'CONNEG',
  'MTRK',
  'LIMITS',
]);
const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
const SOURCE_ROUTE = /^@[^\s,:@]+(?:,@[^\s,:@]+)*:/;
const NON_ASCII = /[^\p{ASCII}]/u;
/** RFC 5321 Dot-string; with SMTPUTF8, UTF-8 letters are atext too (RFC 6531 §3.3) */
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;
const PREFIX = /^\s*(MAIL FROM|RCPT TO)\s*:\s*/i;

/** The index of the '>' closing the path that starts at `s[0] === '<'` (quotes honoured), or -1. */
function pathEnd(s: string): number {
  let quoted = false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (c === '>' && !quoted) return i;
  }
  return -1;
}

/** `"alice"@domain` → `alice@domain` when the quoted string needs no quoting; otherwise as is. */
export function unquoteLocalPart(mailbox: string): string {
  if (!mailbox.startsWith('"')) return mailbox;
  let i = 1;
  let content = '';
  for (; i < mailbox.length && mailbox[i] !== '"'; i++) {
    if (mailbox[i] === '\\') i++;
    content += mailbox[i] ?? '';
  }
  if (i >= mailbox.length || mailbox[i + 1] !== '@') return mailbox;
  return DOT_ATOM.test(content) ? `${content}${mailbox.slice(i + 1)}` : mailbox;
}

/**
 * Checks a MAIL FROM or RCPT TO line. Returns the line to hand to the library (canonical form
 * of the path, parameters untouched), or the reply that refuses it. Lines the library refuses
 * itself (no `<`, no `>`) pass through unchanged.
 */
export function checkAddressCommand(verb: 'MAIL' | 'RCPT', line: string, ctx: CommandContext): CheckedCommand {
  const pass: CheckedCommand = { ok: true, line };
  const prefix = PREFIX.exec(line);
  if (!prefix || !prefix[1]!.toUpperCase().startsWith(verb)) return pass;
  const rest = line.slice(prefix[0].length);
  if (!rest.startsWith('<')) return pass;
  const end = pathEnd(rest);
  if (end < 0) return pass;
  const path = rest.slice(1, end);
  const after = rest.slice(end + 1);
  if (after && !/^\s/.test(after)) return { ok: false, reply: Replies.textAfterPath() };

  let smtputf8 = verb === 'RCPT' && ctx.smtputf8;
  for (const token of after.split(/\s+/)) {
    if (!token) continue;
    const eq = token.indexOf('=');
    const keyword = eq < 0 ? token : token.slice(0, eq);
    if (!KEYWORD.test(keyword) || (eq < 0 && !REGISTERED.has(keyword.toUpperCase()))) return { ok: false, reply: Replies.textAfterPath() };
    const name = keyword.toUpperCase();
    const advertised = ctx.esmtp && verb === 'MAIL' && (MAIL_PARAMETERS.has(name) || (name === 'AUTH' && ctx.secure) || (name === PEER_PARAMETER && ctx.peer === true));
    if (!advertised) return { ok: false, reply: Replies.parameterNotSupported(name) };
    if (name === 'SMTPUTF8') smtputf8 = true;
  }

  if (!smtputf8 && NON_ASCII.test(path)) return { ok: false, reply: Replies.nonAsciiAddress() };

  const route = SOURCE_ROUTE.exec(path)?.[0] ?? '';
  let mailbox = unquoteLocalPart(path.slice(route.length));
  if (verb === 'RCPT' && ctx.primaryDomain && mailbox.toLowerCase() === 'postmaster') mailbox = `postmaster@${ctx.primaryDomain}`;
  if (mailbox === path.slice(route.length)) return pass;
  return { ok: true, line: `${verb === 'MAIL' ? 'MAIL FROM' : 'RCPT TO'}:<${route}${mailbox}>${after}` };
}
