// cluster: the Redis the replicas share their abuse counters in, the peer their queues go to when
// one leaves, and what several replicas rule out. The rules (docs/scaling.md):
//   * any `cluster` setting (redis or peers) means several replicas, so `mailboxes.store` must be
//     `lmtp`: with `maildir` each replica would write its own copy of the mailboxes (MP_CLUSTER);
//   * a `role: peer` listener relays for whoever it trusts, so on all interfaces or a public
//     address it needs `smtp.auth.exemptClients` or the peer secret (with TLS on the listener, AUTH
//     being offered only inside TLS); `tls: implicit` is refused, the hand-off client speaks
//     STARTTLS (MP_PEER_LISTENER).
import { isIP } from 'node:net';
import { isNonPublic, parseCidr } from './cidr.js';
import { parseLmtpAddress } from './check-mailboxes.js';
import type { LoadContext } from './context.js';
import type { ClusterState, PeersState, RedisState } from './desired-state.js';
import { Secret } from './secret.js';
import type { ClusterConfig, ListenerConfig } from './types.generated.js';
import { parseDuration } from './units.js';

/** The shortest peer secret accepted: it guards a relay. */
export const MIN_PEER_SECRET = 16;

export interface ClusterContext {
  readonly listeners: readonly ListenerConfig[];
  /** smtp.auth.exemptClients as written */
  readonly exemptClients: readonly string[];
  /** mailboxes.store (schema default applied), or null when that part is broken */
  readonly store: 'maildir' | 'lmtp' | null;
  readonly smtpEnabled: boolean;
}

/** Checks cluster and the peer listeners; returns the state (null: errors). */
export function checkCluster(ctx: LoadContext, c: ClusterConfig, o: ClusterContext, brokenOne: (path: string) => boolean): ClusterState | null {
  let ok = true;
  const redis = c.redis && !brokenOne('cluster.redis') ? checkRedis(ctx, c.redis) : null;
  if (c.redis && !redis) ok = false;
  const peers = c.peers && !brokenOne('cluster.peers') ? checkPeers(ctx, c.peers) : null;
  if (c.peers && !peers) ok = false;
  if ((c.redis || c.peers) && o.store === 'maildir') {
    ctx.error(
      'MP_CLUSTER',
      ['cluster'],
      'cluster settings mean several replicas, and with mailboxes.store: maildir each replica would keep its own copy of the mailboxes (a user would see only the mail that reached the replica Dovecot reads): use mailboxes.store: lmtp with one Dovecot for all replicas (docs/scaling.md)',
      'key',
    );
    ok = false;
  }
  const secret = c.peers?.secretFile !== undefined;
  let peerListeners = 0;
  o.listeners.forEach((l, i) => {
    if (brokenOne(`smtp.listeners[${i}]`) || l.role !== 'peer') return;
    peerListeners++;
    const path = ['smtp', 'listeners', i];
    if (l.tls === 'implicit') {
      ctx.error('MP_PEER_LISTENER', [...path, 'tls'], `peer listener '${l.name}' has tls: implicit; the hand-off client speaks STARTTLS: use tls: starttls (or none, for exemptClients only)`);
      ok = false;
      return;
    }
    const open = l.address === undefined || !isIP(l.address) || l.address === '0.0.0.0' || l.address === '::' || !isNonPublic(parseCidr(l.address));
    const credential = secret && (l.tls ?? 'starttls') !== 'none';
    if (open && !o.exemptClients.length && !credential) {
      const where = l.address === undefined || l.address === '0.0.0.0' || l.address === '::' ? 'all interfaces' : `the public address ${l.address}`;
      ctx.error(
        'MP_PEER_LISTENER',
        l.address === undefined ? path : [...path, 'address'],
        `peer listener '${l.name}' is bound to ${where} and nothing limits who may relay through it: list the other replicas in smtp.auth.exemptClients, or set cluster.peers.secretFile${(l.tls ?? 'starttls') === 'none' ? ' and give the listener tls: starttls (AUTH is offered only inside TLS)' : ''}, or bind it to a private address`,
      );
      ok = false;
    }
  });
  if (peers && o.smtpEnabled && peerListeners === 0) {
    ctx.warn(
      'MP_CLUSTER',
      ['cluster', 'peers'],
      'no listener has role: peer, so the other replicas cannot hand their queues to this one (add one, such as { name: peer, port: 2525, role: peer })',
      'key',
    );
  }
  return ok ? { redis, peers } : null;
}

function checkRedis(ctx: LoadContext, r: NonNullable<ClusterConfig['redis']>): RedisState | null {
  const path = ['cluster', 'redis'];
  let ok = true;
  let url: URL | null = null;
  try {
    url = new URL(r.url);
  } catch {
    ctx.error('MP_CLUSTER', [...path, 'url'], `'${r.url}' is not a URL such as redis://mailplane-redis:6379/0`);
    ok = false;
  }
  if (url) {
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      ctx.error('MP_CLUSTER', [...path, 'url'], `'${url.protocol}' is not redis: or rediss:`);
      ok = false;
    } else if (!url.hostname) {
      ctx.error('MP_CLUSTER', [...path, 'url'], 'the URL names no host');
      ok = false;
    } else if (url.password) {
      ctx.error('MP_PLAINTEXT_PASSWORD', [...path, 'url'], 'the URL carries a password: put it in cluster.redis.passwordFile (a URL is shown in /status and logs)');
      ok = false;
    } else if (url.pathname && url.pathname !== '/' && !/^\/\d{1,2}$/.test(url.pathname)) {
      ctx.error('MP_CLUSTER', [...path, 'url'], `'${url.pathname}' is not a database number (/0 … /15)`);
      ok = false;
    }
  }
  let password: Secret | null = null;
  if (r.passwordFile !== undefined) {
    const text = ctx.readFile([...path, 'passwordFile'], r.passwordFile);
    if (text === null) ok = false;
    else {
      const pw = text.replace(/\r?\n$/, '');
      if (!pw || /[\r\n]/.test(pw)) {
        ctx.error('MP_SECRET_SOURCE', [...path, 'passwordFile'], !pw ? 'password file is empty' : 'the password must be one line');
        ok = false;
      }
      password = new Secret(pw, 'password');
    }
  }
  if (!ok) return null;
  return { url: r.url, password, timeoutMs: parseDuration(r.timeout!), keyPrefix: r.keyPrefix! };
}

function checkPeers(ctx: LoadContext, p: NonNullable<ClusterConfig['peers']>): PeersState | null {
  const path = ['cluster', 'peers'];
  let ok = true;
  const target = parseLmtpAddress(p.handoff);
  let handoff: PeersState['handoff'] | null = null;
  if (typeof target === 'string' || 'path' in target) {
    ctx.error('MP_CLUSTER', [...path, 'handoff'], typeof target === 'string' ? target.replace(/:24\b/g, ':2525') : `'${p.handoff}' is a path: give the peer listener as host:port`);
    ok = false;
  } else handoff = target;
  let secret: Secret | null = null;
  if (p.secretFile !== undefined) {
    const text = ctx.readFile([...path, 'secretFile'], p.secretFile);
    if (text === null) ok = false;
    else {
      const s = text.replace(/\r?\n$/, '');
      if (s.length < MIN_PEER_SECRET || /[\r\n\0]/.test(s)) {
        ctx.error('MP_CLUSTER', [...path, 'secretFile'], `the peer secret must be one line of at least ${MIN_PEER_SECRET} characters (it lets whoever holds it relay through peer listeners)`);
        ok = false;
      }
      secret = new Secret(s, 'password');
    }
  }
  return ok && handoff ? { handoff, secret } : null;
}
