// Checks of the smtp block that a schema cannot express: listener uniqueness and
// addresses, TLS files, trusted ranges.
import { isIP } from 'node:net';
import { readTlsMaterial, certCovers, TlsError } from '../tls/material.js';
import { formatCidr, isNonPublic, parseCidr, type Cidr } from './cidr.js';
import type { LoadContext } from './context.js';
import type { TlsFiles } from './desired-state.js';
import type { ListenerConfig, SmtpConfig } from './types.generated.js';

const EXPIRY_WARNING_MS = 30 * 86400_000;

export function checkListeners(ctx: LoadContext, listeners: readonly ListenerConfig[], broken: (prefix: string) => boolean): void {
  const names = new Map<string, number>();
  const sockets: { address: string | null; port: number; index: number }[] = [];
  listeners.forEach((l, i) => {
    if (broken(`smtp.listeners[${i}]`)) return;
    const prev = names.get(l.name);
    if (prev !== undefined) ctx.error('MP_DUPLICATE', ['smtp', 'listeners', i, 'name'], `listener name '${l.name}' is already used by smtp.listeners[${prev}]`);
    else names.set(l.name, i);
    const address = l.address ?? null;
    if (address !== null && !isIP(address)) {
      ctx.error('MP_ADDRESS', ['smtp', 'listeners', i, 'address'], `'${address}' is not an IP address (use 0.0.0.0 or :: for all interfaces, or leave it out)`);
      return;
    }
    const clash = sockets.find((s) => s.port === l.port && overlaps(s.address, address));
    if (clash) {
      ctx.error('MP_PORT_CONFLICT', ['smtp', 'listeners', i, 'port'], `port ${l.port} is already used by smtp.listeners[${clash.index}] on ${clash.address ?? 'all interfaces'}`);
    }
    sockets.push({ address, port: l.port, index: i });
  });
}

/** Whether two bind addresses would collide on the same port. */
export function overlaps(a: string | null, b: string | null): boolean {
  const wild = (x: string | null) => x === null || x === '0.0.0.0' || x === '::';
  if (wild(a) || wild(b)) return true;
  return a === b;
}

export function checkTls(ctx: LoadContext, smtp: SmtpConfig, hostname: string): TlsFiles | null {
  const listeners = Array.isArray(smtp.listeners) ? smtp.listeners : [];
  const needing = listeners.findIndex((l) => (l.tls ?? 'starttls') !== 'none');
  if (!smtp.tls) {
    if (needing >= 0 && smtp.enabled !== false) {
      const l = listeners[needing]!;
      const where = l.tls === undefined ? ['smtp', 'listeners', needing] : ['smtp', 'listeners', needing, 'tls'];
      ctx.error('MP_TLS_REQUIRED', where, `listener '${l.name}' uses tls: ${l.tls ?? 'starttls'} but smtp.tls (certFile and keyFile) is not configured`);
    }
    return null;
  }
  const certPem = ctx.readFile(['smtp', 'tls', 'certFile'], smtp.tls.certFile);
  const keyPem = ctx.readFile(['smtp', 'tls', 'keyFile'], smtp.tls.keyFile);
  if (certPem === null || keyPem === null) return null;
  try {
    const material = readTlsMaterial(certPem, keyPem);
    if (material.notAfter <= ctx.now) {
      ctx.error('MP_TLS_EXPIRED', ['smtp', 'tls', 'certFile'], `certificate expired on ${new Date(material.notAfter).toISOString()}`);
    } else if (material.notBefore > ctx.now) {
      ctx.error('MP_TLS_EXPIRED', ['smtp', 'tls', 'certFile'], `certificate is not valid before ${new Date(material.notBefore).toISOString()}`);
    } else if (material.notAfter - ctx.now < EXPIRY_WARNING_MS) {
      const days = Math.floor((material.notAfter - ctx.now) / 86400_000);
      ctx.warn('MP_TLS_EXPIRING', ['smtp', 'tls', 'certFile'], `certificate expires in ${days} day${days === 1 ? '' : 's'} (${new Date(material.notAfter).toISOString()})`);
    }
    if (!certCovers(material.names, hostname)) {
      ctx.warn('MP_TLS_NAME', ['smtp', 'tls', 'certFile'], `certificate names (${material.names.join(', ') || 'none'}) do not include hostname ${hostname}`);
    }
    return { certFile: ctx.resolvePath(smtp.tls.certFile), keyFile: ctx.resolvePath(smtp.tls.keyFile), material };
  } catch (e) {
    if (!(e instanceof TlsError)) throw e;
    ctx.error('MP_TLS_FILE', ['smtp', 'tls', e.which === 'cert' ? 'certFile' : 'keyFile'], e.message);
    return null;
  }
}

/** Parses exemptClients or lanNetworks; 0.0.0.0/0 and ::/0 are refused outright. */
export function checkRanges(ctx: LoadContext, key: 'exemptClients' | 'lanNetworks', list: readonly string[], broken: (prefix: string) => boolean): Cidr[] {
  const out: Cidr[] = [];
  list.forEach((text, i) => {
    if (broken(`smtp.auth.${key}[${i}]`)) return;
    const path = ['smtp', 'auth', key, i];
    let c: Cidr;
    try {
      c = parseCidr(text);
    } catch (e) {
      ctx.error('MP_CIDR', path, (e as Error).message);
      return;
    }
    if (c.prefix === 0) {
      ctx.error('MP_OPEN_RELAY', path, `'${text}' trusts every address on the internet, which would make this server an open relay; list only your own networks`);
      return;
    }
    if (c.hostBitsSet) ctx.warn('MP_CIDR', path, `'${text}' has host bits set; it means ${formatCidr(c)}`);
    if (!isNonPublic(c)) ctx.warn('MP_PUBLIC_RANGE', path, `'${text}' contains public addresses; clients there are trusted to relay without AUTH`);
    out.push(c);
  });
  return out;
}
