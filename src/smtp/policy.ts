// The policy a session pins when it connects: built once per applied generation, immutable,
// so a reload never changes the rules in the middle of someone's transaction.
import type { AccountBackend } from '../accounts/backend.js';
import { AddressSet, parseCidr } from '../config/cidr.js';
import type { RejectedRecipients, SendRate, SpamFilterState } from '../config/desired-state.js';
import type { Secret } from '../config/secret.js';
import type { PolicySpec } from '../plan/specs.js';
import { InboundAuth } from './inbound-auth.js';

export interface SessionPolicy {
  readonly generation: number;
  readonly hostname: string;
  readonly domains: ReadonlySet<string>;
  readonly accounts: AccountBackend;
  readonly authRequired: boolean;
  readonly exemptClients: AddressSet;
  /** null unless lanBypass is on */
  readonly lanNetworks: AddressSet | null;
  readonly maxMessageSize: number;
  readonly maxRecipients: number;
  readonly maxLineLength: number;
  readonly commandTimeoutMs: number;
  readonly dataTimeoutMs: number;
  /** delivery.maxReceivedHeaders: a message with more (ours included) is refused at the end of DATA */
  readonly maxReceivedHeaders: number;
  readonly sendRate: SendRate;
  readonly rejectedRecipients: RejectedRecipients;
  readonly auth: { readonly maxFailures: number; readonly windowMs: number; readonly lockoutMs: number };
  /** inbound.checks on mx listeners (null: every check is off) */
  readonly inboundAuth: InboundAuth | null;
  /** inbound.spamFilter: which messages are scanned and what an error does (the SpamFilter service scans) */
  readonly spamFilter: SpamFilterState | null;
  /** inbound.junkFolder */
  readonly junkFolder: string;
  /** cluster.peers.secretFile: the password of the login `peer` on peer listeners (null: exempt clients only) */
  readonly peerSecret: Secret | null;
}

/** The policy from its spec alone (plan/specs.ts): what it reads is what a change to it rebuilds. */
export function buildPolicy(spec: PolicySpec, generation: number, accounts: AccountBackend): SessionPolicy {
  const a = spec.auth;
  return Object.freeze({
    generation,
    hostname: spec.hostname,
    domains: new Set(spec.domains),
    accounts,
    authRequired: a.required,
    exemptClients: new AddressSet(a.exemptClients.map(parseCidr)),
    lanNetworks: a.lanBypass ? new AddressSet(a.lanNetworks.map(parseCidr)) : null,
    maxMessageSize: spec.maxMessageSize,
    maxRecipients: spec.limits.maxRecipients,
    maxLineLength: spec.limits.maxLineLength,
    commandTimeoutMs: spec.limits.commandTimeoutMs,
    dataTimeoutMs: spec.limits.dataTimeoutMs,
    maxReceivedHeaders: spec.maxReceivedHeaders,
    sendRate: spec.limits.sendRate,
    rejectedRecipients: spec.limits.rejectedRecipients,
    inboundAuth: InboundAuth.from(spec.hostname, spec.inbound, spec.domains),
    spamFilter: spec.inbound.spamFilter,
    junkFolder: spec.inbound.junkFolder,
    peerSecret: spec.peerSecret,
    auth: Object.freeze({ maxFailures: a.maxFailures, windowMs: a.failureWindowMs, lockoutMs: a.lockoutMs }),
  });
}

/** Exempt clients and, with lanBypass, LAN clients may send without AUTH and relay. */
export function isTrusted(policy: SessionPolicy, address: string): boolean {
  return policy.exemptClients.has(address) || (policy.lanNetworks?.has(address) ?? false);
}
