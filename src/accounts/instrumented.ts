// Times every call of an account backend into mailplane_accounts_lookup_duration_seconds.
import type { Metrics } from '../ops/metrics.js';
import type { AccountBackend } from './backend.js';

export function instrumented(b: AccountBackend, metrics: Metrics): AccountBackend {
  const time = async <T>(operation: string, run: () => Promise<T>): Promise<T> => {
    const end = metrics.accountsLookupDuration.startTimer({ backend: b.kind, operation });
    try {
      return await run();
    } finally {
      end();
    }
  };
  return {
    kind: b.kind,
    authenticate: (login, password) => time('auth', () => b.authenticate(login, password)),
    findRecipient: (local) => time('recipient', () => b.findRecipient(local)),
    senderLocalParts: (user) => time('sender', () => b.senderLocalParts(user)),
    health: () => b.health(),
    close: () => b.close(),
  };
}
