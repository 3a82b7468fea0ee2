// DKIM signing of outbound mail (RFC 6376, RFC 8463): one signer per `signing` spec, built on
// prepare and swapped whole on commit. A message is signed with every key of its From: domain
// (relaxed/relaxed, the header fields of DKIM_HEADERS that it has, From once more than it has
// so that no From can be added); a message from any other domain gets no signature.
//
// mailauth does the canonicalization and the signing. It cannot over-sign, so OverSigning
// (below) hooks into its DkimSigner, the only use of its internals: mailauth is pinned to an
// exact version in package.json, and test/dkim-sign.test.ts checks the result with an
// independent verifier (python3-dkim), over-signing included.
import { createPrivateKey } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Readable, Writable } from 'node:stream';
import { domainToASCII } from 'node:url';
import type { Logger } from '../ops/logger.js';
import type { Metrics } from '../ops/metrics.js';
import type { SigningKeySpec, SigningSpec } from '../plan/specs.js';

/**
 * The header fields signed when present: RFC 6376 section 5.4.1's list, plus what identifies a
 * message or decides how it is read (Message-ID, Sender, MIME-Version, Content-*), and
 * List-Unsubscribe-Post (RFC 8058 wants it signed). Never Received, Return-Path or
 * DKIM-Signature: those are added or rewritten on the way.
 */
export const DKIM_HEADERS: readonly string[] = [
  'From',
  'Reply-To',
  'Subject',
  'Date',
  'To',
  'Cc',
  'Resent-Date',
  'Resent-From',
  'Resent-To',
  'Resent-Cc',
  'In-Reply-To',
  'References',
  'List-Id',
  'List-Help',
  'List-Unsubscribe',
  'List-Subscribe',
  'List-Post',
  'List-Owner',
  'List-Archive',
  'List-Unsubscribe-Post',
  'Message-ID',
  'Sender',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
];

/** Named in h= once more than the message has them: a verifier then fails any copy added later. */
export const OVERSIGNED: readonly string[] = ['From'];

// ---- mailauth's signer, with over-signing ------------------------------------------------

interface ParsedHeader {
  /** lower case */
  key: string;
  /** as written: what h= lists */
  casedKey: string;
  line: Buffer;
}

interface MailauthSigner extends Writable {
  signatureHeaders: string[];
  errors: { err: Error; selector?: string; signingDomain?: string }[];
  messageHeaders(headers: { parsed: ParsedHeader[] }): Promise<void>;
}

interface SignatureData {
  signingDomain: string;
  selector: string;
  privateKey: string;
  algorithm: string;
  canonicalization: string;
}

const require = createRequire(import.meta.url);
const { DkimSigner: MailauthDkimSigner } = require('mailauth/lib/dkim/dkim-signer.js') as {
  DkimSigner: new (options: { canonicalization: string; headerList: string; signatureData: SignatureData[] }) => MailauthSigner;
};

/**
 * mailauth builds h= from the header fields it signs, each named by its `casedKey`, and hashes
 * exactly those fields. Naming the topmost From twice adds one h= entry that matches no field:
 * RFC 6376 section 5.4.2 hashes it as the null string, here as there, so the signature stays
 * valid and a From added above it breaks it.
 */
class OverSigning extends MailauthDkimSigner {
  override async messageHeaders(headers: { parsed: ParsedHeader[] }): Promise<void> {
    for (const name of OVERSIGNED) {
      const top = headers.parsed.find((h) => h.key === name.toLowerCase());
      if (top) top.casedKey = `${top.casedKey}: ${top.casedKey}`;
    }
    return super.messageHeaders(headers);
  }
}

// ---- the signer ---------------------------------------------------------------------------

export interface DkimSignerDeps {
  readonly metrics?: Metrics;
  readonly log?: Logger;
}

export class DkimSigner {
  readonly #byDomain = new Map<string, readonly SigningKeySpec[]>();

  constructor(
    readonly spec: SigningSpec,
    private readonly deps: DkimSignerDeps = {},
  ) {
    for (const k of spec.keys) {
      // load checked every key; a key that fails here fails the apply (prepare), never a message
      try {
        createPrivateKey(k.privateKey.reveal());
      } catch (e) {
        throw new Error(`DKIM key of ${k.domain} selector ${k.selector} cannot be used: ${(e as Error).message}`, { cause: e });
      }
      this.#byDomain.set(k.domain, [...(this.#byDomain.get(k.domain) ?? []), k]);
    }
    for (const domain of this.#byDomain.keys()) deps.metrics?.dkimSignatures.inc({ domain }, 0);
  }

  /** Domains with at least one key. */
  get domains(): readonly string[] {
    return [...this.#byDomain.keys()];
  }

  /**
   * The keyed domain `host` is or lies under (the longest), or null. For mail whose From: is
   * not a domain of ours but our host name, such as the DSNs from MAILER-DAEMON@hostname: signed
   * with d= this domain, it passes DMARC's relaxed alignment.
   */
  alignedDomain(host: string): string | null {
    const h = normalize(host);
    if (!h) return null;
    const under = [...this.#byDomain.keys()].filter((d) => h === d || h.endsWith(`.${d}`));
    return under.sort((x, y) => y.length - x.length)[0] ?? null;
  }

  /** Whether mail whose From: domain is `domain` is signed. */
  signsFor(domain: string | null): boolean {
    return domain !== null && this.#byDomain.has(normalize(domain) ?? '');
  }

  /**
   * The DKIM-Signature header fields to put in front of `message` (the whole message as it will
   * be sent, CRLF line ends), each ending in CRLF: one per key of `fromDomain` — or '' when it
   * has none, or when no signature could be made (counted in
   * mailplane_dkim_signing_failures_total and logged; never the key). Prepending the result
   * changes nothing that was signed, so the same bytes can be sent on every attempt. A Readable
   * is read to its end, but only when the domain has keys (see signsFor); if reading it fails,
   * sign() rejects with that error. Signing itself never throws. `logFields` (the queue id) go
   * into the log line of a failure.
   */
  async sign(message: Buffer | string | Readable, fromDomain: string, logFields: Readonly<Record<string, unknown>> = {}): Promise<string> {
    const domain = normalize(fromDomain);
    const keys = domain ? this.#byDomain.get(domain) : undefined;
    if (!keys?.length) return '';
    const signer = new OverSigning({
      canonicalization: 'relaxed/relaxed',
      headerList: DKIM_HEADERS.join(':'),
      signatureData: keys.map((k) => ({ signingDomain: k.domain, selector: k.selector, privateKey: k.privateKey.reveal(), algorithm: k.algorithm, canonicalization: 'relaxed/relaxed' })),
    });
    try {
      await feed(signer, message);
    } catch (e) {
      if (e instanceof InputError) throw e.cause;
      // mailauth itself failed: no signature at all
      this.deps.metrics?.dkimSigningFailures.inc(keys.length);
      this.deps.log?.error('DKIM signing failed', { ...logFields, domain, error: (e as Error).message });
      return '';
    }
    if (signer.errors.length) {
      // counted per signature, logged once per message
      this.deps.metrics?.dkimSigningFailures.inc(signer.errors.length);
      const selectors = [...new Set(signer.errors.flatMap((e) => (e.selector ? [e.selector] : [])))];
      const error = [...new Set(signer.errors.map((e) => e.err.message))].join('; ');
      this.deps.log?.error('DKIM signing failed', { ...logFields, domain, ...(selectors.length ? { selector: selectors.join(', ') } : {}), error });
    }
    const headers = signer.signatureHeaders;
    if (headers.length) this.deps.metrics?.dkimSignatures.inc({ domain: domain! });
    return headers.length ? `${headers.join('\r\n')}\r\n` : '';
  }
}

/** Reading the message failed (not the signing): sign() passes the cause on to its caller. */
class InputError extends Error {}

function feed(w: Writable, input: Buffer | string | Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    w.once('finish', resolve);
    w.once('error', reject);
    if (typeof input === 'string' || Buffer.isBuffer(input)) {
      w.end(input);
    } else {
      input.once('error', (e) => {
        w.destroy();
        reject(new InputError('the message could not be read', { cause: e }));
      });
      input.pipe(w);
    }
  });
}

// ---- the From: domain ---------------------------------------------------------------------

/** The header section of a message (up to the empty line that ends it), as text. */
export function headerSection(message: Buffer | string): string {
  const buf = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  if (buf[0] === 0x0a || (buf[0] === 0x0d && buf[1] === 0x0a)) return '';
  const ends = [buf.indexOf('\r\n\r\n'), buf.indexOf('\n\n')].filter((i) => i >= 0);
  return buf.subarray(0, ends.length ? Math.min(...ends) : buf.length).toString('utf8');
}

/** Every field of a header section, unfolded: [name as written, value]. */
export function headerFields(section: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of section.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length) out[out.length - 1]![1] += line;
    else {
      const m = line.match(/^([^:\s]+)[ \t]*:(.*)$/);
      if (m) out.push([m[1]!, m[2]!]);
    }
  }
  return out;
}

/**
 * The domain of a message's From: header field (ASCII, lower case), read from its header
 * section only; null when there is no From, more than one, or its addresses are in more than
 * one domain (nothing is signed for such a message).
 */
export function fromDomainOf(message: Buffer | string): string | null {
  const froms = headerFields(headerSection(message)).filter(([name]) => name.toLowerCase() === 'from');
  if (froms.length !== 1) return null;
  const domains = new Set(addressesOf(froms[0]![1]).map(domainOf));
  if (domains.size !== 1) return null;
  return [...domains][0] ?? null;
}

/** The addr-specs of an address-list field value (RFC 5322 section 3.4): comments, display names and group names dropped. */
export function addressesOf(value: string): string[] {
  const out: string[] = [];
  let outside = ''; // the mailbox's text outside <>
  let angle: string | null = null; // inside <>, once there was one
  let inAngle = false;
  let quoted = false;
  let comment = 0;
  const add = (s: string) => {
    if (inAngle) angle += s;
    else outside += s;
  };
  const flush = () => {
    const a = (angle ?? outside).trim();
    if (a) out.push(a.replace(/^(@[^,:]*,?)+:/, '')); // obsolete source route: <@a,@b:user@host>
    outside = '';
    angle = null;
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (comment) {
      if (c === '\\') i++;
      else if (c === '(') comment++;
      else if (c === ')') comment--;
    } else if (quoted) {
      if (c === '\\') add(c + (value[++i] ?? ''));
      else {
        if (c === '"') quoted = false;
        add(c);
      }
    } else if (c === '(') comment = 1;
    else if (c === '"') {
      quoted = true;
      add(c);
    } else if (c === '<' && !inAngle) {
      inAngle = true;
      angle = '';
    } else if (c === '>' && inAngle) inAngle = false;
    else if (inAngle) add(c);
    else if (c === ',' || c === ';') flush();
    else if (c === ':')
      outside = ''; // what came before was a group's display name
    else add(c);
  }
  flush();
  return out;
}

/** The domain of an addr-spec, normalized like `domains`; null for none or an address literal. */
export function domainOf(addrSpec: string): string | null {
  const at = addrSpec.lastIndexOf('@');
  if (at < 0) return null;
  return normalize(addrSpec.slice(at + 1));
}

function normalize(domain: string): string | null {
  const d = domain.trim().replace(/\.$/, '');
  if (!d || d.startsWith('[')) return null;
  const ascii = domainToASCII(d).toLowerCase();
  return ascii || null;
}
