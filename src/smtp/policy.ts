// The policy a session pins when it connects: built once per applied generation, immutable,
// so a reload never changes the rules in the middle of someone's transaction.
import type { AccountBackend } from '../accounts/backend.js';
import { AddressSet } from '../config/cidr.js';
import type { DesiredState } from '../config/desired-state.js';

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
  readonly auth: { readonly maxFailures: number; readonly windowMs: number; readonly lockoutMs: number };
}

export function buildPolicy(state: DesiredState, generation: number, accounts: AccountBackend): SessionPolicy {
  const a = state.smtp.auth;
  return Object.freeze({
    generation,
    hostname: state.hostname,
    domains: new Set(state.domains),
    accounts,
    authRequired: a.required,
    exemptClients: new AddressSet(a.exemptClients),
    lanNetworks: a.lanBypass ? new AddressSet(a.lanNetworks) : null,
    maxMessageSize: state.smtp.maxMessageSize,
    maxRecipients: state.smtp.limits.maxRecipients,
    maxLineLength: state.smtp.limits.maxLineLength,
    commandTimeoutMs: state.smtp.limits.commandTimeoutMs,
    dataTimeoutMs: state.smtp.limits.dataTimeoutMs,
    auth: Object.freeze({ maxFailures: a.maxFailures, windowMs: a.failureWindowMs, lockoutMs: a.lockoutMs }),
  });
}

/** Exempt clients and, with lanBypass, LAN clients may send without AUTH and relay. */
export function isTrusted(policy: SessionPolicy, address: string): boolean {
  return policy.exemptClients.has(address) || (policy.lanNetworks?.has(address) ?? false);
}
