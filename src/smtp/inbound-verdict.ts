// What happens to a message after its authentication checks: delivered, filed as junk, refused,
// or deferred. Pure functions over mailauth's results and the configured rules (inbound.checks):
// `dmarc: enforce` applies the From: domain's published policy, `ownDomains` refuses or files
// mail that claims one of our domains without authenticating, and a passing ARC chain from a
// trusted sealer overrides either.
import type { AuthenticateResult } from 'mailauth';
import { domainToASCII } from 'node:url';
import type { InboundChecks } from '../config/desired-state.js';

export type InboundAction = 'deliver' | 'junk' | 'reject' | 'tempfail';
/** which rule decided: the metric label */
export type InboundRule = 'dmarc' | 'own_domain';

export interface Decision {
  readonly action: InboundAction;
  /** null when the message is delivered normally with no rule involved */
  readonly rule: InboundRule | null;
  /** the From: domain the rule judged (ASCII, lower case) */
  readonly domain: string | null;
  /** a rule's verdict was overridden by the ARC chain of this trusted sealer */
  readonly arcOverride: string | null;
}

export interface Rules {
  readonly dmarc: InboundChecks['dmarc'];
  readonly ownDomains: InboundChecks['ownDomains'];
  readonly arcTrustedSealers: readonly string[];
  /** our domains, ASCII lower case */
  readonly domains: ReadonlySet<string>;
}

const DELIVER: Decision = Object.freeze({ action: 'deliver', rule: null, domain: null, arcOverride: null });
const STRENGTH: Record<InboundAction, number> = { deliver: 0, junk: 1, tempfail: 2, reject: 3 };

/** Whether any rule needs a verdict (otherwise every message is delivered as it is). */
export function enforcing(r: Pick<Rules, 'dmarc' | 'ownDomains'>): boolean {
  return r.dmarc === 'enforce' || r.ownDomains !== 'off';
}

/**
 * When the checks did not finish in time: the From: domain is not known, so a rule that must
 * be enforced defers the message (451: the sender retries), and a rule that only files delivers.
 */
export function decideUnfinished(r: Rules): Decision {
  if (r.dmarc === 'enforce') return { action: 'tempfail', rule: 'dmarc', domain: null, arcOverride: null };
  if (r.ownDomains === 'reject') return { action: 'tempfail', rule: 'own_domain', domain: null, arcOverride: null };
  return DELIVER;
}

/** The decision for a message whose checks finished. */
export function decide(res: AuthenticateResult, r: Rules): Decision {
  const candidates = [r.dmarc === 'enforce' ? dmarcDecision(res) : DELIVER, r.ownDomains !== 'off' ? ownDomainDecision(res, r) : DELIVER];
  let d = candidates.reduce((a, b) => (STRENGTH[b.action] > STRENGTH[a.action] ? b : a));
  if (d.action === 'deliver') return DELIVER;
  const sealer = trustedArcPass(res, r, d.domain);
  if (sealer) d = { action: 'deliver', rule: d.rule, domain: d.domain, arcOverride: sealer };
  return d;
}

/** The sender domain's published DMARC policy, applied to a failing message. */
function dmarcDecision(res: AuthenticateResult): Decision {
  const dm = res.dmarc;
  if (!dm) return DELIVER;
  const domain = ascii(dm.status?.header?.from ?? '') || null;
  const result = String(dm.status?.result ?? 'none');
  if (result === 'temperror') return { action: 'tempfail', rule: 'dmarc', domain, arcOverride: null };
  if (result !== 'fail') return DELIVER;
  const policy = String((dm.status as { policy?: { dmarc?: string } }).policy?.dmarc ?? dm.policy ?? 'none');
  if (policy === 'reject') return { action: 'reject', rule: 'dmarc', domain, arcOverride: null };
  if (policy === 'quarantine') return { action: 'junk', rule: 'dmarc', domain, arcOverride: null };
  return DELIVER;
}

/** A From: of ours with neither an aligned valid DKIM signature nor an aligned SPF pass. */
function ownDomainDecision(res: AuthenticateResult, r: Rules): Decision {
  const from = (res.dkim?.headerFrom ?? []).map((a) => ascii(a.slice(a.lastIndexOf('@') + 1)));
  const domain = from.find((d) => r.domains.has(d));
  if (!domain) return DELIVER;
  const aligned = (d: string | undefined | false) => !!d && aligns(ascii(d), domain, r.domains);
  const dkim = res.dkim?.results ?? [];
  if (dkim.some((s) => s.status?.result === 'pass' && aligned(s.signingDomain))) return DELIVER;
  const spf = res.spf;
  if (spf && spf.status?.result === 'pass' && aligned(spf.domain)) return DELIVER;
  const unknown = dkim.some((s) => s.status?.result === 'temperror' && aligned(s.signingDomain)) || (spf && spf.status?.result === 'temperror');
  if (unknown) return r.ownDomains === 'reject' ? { action: 'tempfail', rule: 'own_domain', domain, arcOverride: null } : DELIVER;
  return { action: r.ownDomains === 'reject' ? 'reject' : 'junk', rule: 'own_domain', domain, arcOverride: null };
}

/**
 * Relaxed alignment without a public suffix list, safe because `from` is one of our domains:
 * the same domain, one of its subdomains, or a parent of it that is also ours.
 */
function aligns(d: string, from: string, ours: ReadonlySet<string>): boolean {
  return d === from || d.endsWith(`.${from}`) || (from.endsWith(`.${d}`) && ours.has(d));
}

/**
 * The sealer of a validating ARC chain when it is trusted and recorded an authentication pass
 * for the From: domain (dmarc=pass, or dkim/spf pass of that domain or a subdomain); else null.
 */
function trustedArcPass(res: AuthenticateResult, r: Rules, domain: string | null): string | null {
  const arc = res.arc;
  if (!arc || arc.status?.result !== 'pass' || !r.arcTrustedSealers.length) return null;
  const sealer = ascii((arc.signature && arc.signature.signingDomain) || '');
  if (!sealer || !r.arcTrustedSealers.includes(sealer)) return null;
  const aar = (arc.authenticationResults ?? {}) as {
    dmarc?: { result?: string; header?: { from?: unknown } };
    dkim?: { result?: string; header?: { d?: unknown; i?: unknown } }[];
    spf?: { result?: string; smtp?: { mailfrom?: unknown } };
  };
  const ofFrom = (v: unknown) => {
    if (typeof v !== 'string') return false;
    const d = ascii(v.slice(v.lastIndexOf('@') + 1));
    return domain === null ? false : d === domain || d.endsWith(`.${domain}`);
  };
  if (aar.dmarc?.result === 'pass' && (domain === null || aar.dmarc.header?.from === undefined || ofFrom(aar.dmarc.header.from))) return sealer;
  if ((aar.dkim ?? []).some((e) => e?.result === 'pass' && (ofFrom(e.header?.d) || ofFrom(e.header?.i)))) return sealer;
  if (aar.spf?.result === 'pass' && ofFrom(aar.spf.smtp?.mailfrom)) return sealer;
  return null;
}

function ascii(d: string): string {
  const s = d.trim().replace(/\.$/, '').toLowerCase();
  return domainToASCII(s) || s;
}
