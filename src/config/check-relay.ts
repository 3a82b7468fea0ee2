// Relay settings (secret source, TLS vs port) and the ops listen address.
import { isIP } from 'node:net';
import type { LoadContext } from './context.js';
import type { DeliveryState, RelayState } from './desired-state.js';
import { Secret } from './secret.js';
import type { DeliveryConfig, RelayConfig } from './types.generated.js';
import { parseDuration, parseSize } from './units.js';

export interface CheckOptions {
  /** true when the state will be run (a missing environment variable is then an error, not a warning) */
  readonly forRun: boolean;
}

export function checkRelay(ctx: LoadContext, r: RelayConfig, opts: CheckOptions): RelayState {
  const port = r.port!;
  const secure = r.secure!;
  const implicitTls = r.implicitTls ?? port === 465; // derived from the port unless said otherwise
  if (implicitTls && !secure) {
    ctx.error('MP_RELAY_PORT', ['relay', 'secure'], `${r.implicitTls ? 'implicitTls' : 'port 465'} means implicit TLS; set secure: true (or use port 587 for STARTTLS)`);
  }
  let auth: RelayState['auth'] = null;
  if (r.auth) {
    const a = r.auth;
    const path = ['relay', 'auth'];
    if (a.passwordFile !== undefined && a.passwordEnv !== undefined) {
      ctx.error('MP_SECRET_SOURCE', [...path, 'passwordEnv'], 'give exactly one of passwordFile or passwordEnv, not both', 'key');
    } else if (a.passwordFile === undefined && a.passwordEnv === undefined) {
      ctx.error('MP_SECRET_SOURCE', path, 'relay.auth needs passwordFile or passwordEnv (the password itself never goes in this file)', 'key');
    } else if (a.passwordFile !== undefined) {
      const text = ctx.readFile([...path, 'passwordFile'], a.passwordFile);
      if (text !== null) {
        const pw = text.replace(/\r?\n$/, '');
        if (!pw) ctx.error('MP_SECRET_SOURCE', [...path, 'passwordFile'], 'password file is empty');
        auth = { username: a.username, password: new Secret(pw, 'password'), source: `file ${ctx.resolvePath(a.passwordFile)}` };
      }
    } else if (a.passwordEnv !== undefined) {
      const pw = ctx.env[a.passwordEnv];
      if (pw === undefined || pw === '') {
        const msg = `environment variable ${a.passwordEnv} is not set${opts.forRun ? '' : ' here; it must be set where mailplane runs'}`;
        if (opts.forRun) ctx.error('MP_SECRET_SOURCE', [...path, 'passwordEnv'], msg);
        else ctx.warn('MP_SECRET_SOURCE', [...path, 'passwordEnv'], msg);
      }
      auth = { username: a.username, password: new Secret(pw ?? '', 'password'), source: `environment ${a.passwordEnv}` };
    }
    if (auth && !secure) {
      ctx.warn('MP_RELAY_PORT', ['relay', 'secure'], 'with secure: false the relay password is sent in clear text when the relay does not offer STARTTLS');
    }
  }
  let caPem: string | null = null;
  if (r.caFile !== undefined) {
    caPem = ctx.readFile(['relay', 'caFile'], r.caFile);
    if (caPem !== null && !caPem.includes('-----BEGIN CERTIFICATE-----')) {
      ctx.error('MP_TLS_FILE', ['relay', 'caFile'], 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
    }
  }
  return { enabled: r.enabled!, host: r.host ?? null, port, secure, implicitTls, caPem, auth };
}

export function checkDelivery(ctx: LoadContext, d: DeliveryConfig): DeliveryState {
  const min = parseDuration(d.minRetryDelay!);
  const max = parseDuration(d.maxRetryDelay!);
  if (min > max) ctx.error('MP_INVALID_VALUE', ['delivery', 'minRetryDelay'], `must not be longer than delivery.maxRetryDelay (${d.maxRetryDelay})`);
  const servers: string[] = [];
  d.dns!.servers!.forEach((text, i) => {
    const server = resolverAddress(text);
    if (server === null) {
      ctx.error('MP_ADDRESS', ['delivery', 'dns', 'servers', i], `'${text}' is not a resolver address (ip, ip:port or [ipv6]:port)`);
      return;
    }
    servers.push(server);
  });
  return {
    minRetryDelayMs: min,
    maxRetryDelayMs: max,
    maxLifetimeMs: parseDuration(d.maxLifetime!),
    concurrency: d.concurrency!,
    destinationConcurrency: d.destinationConcurrency!,
    maxBytesInFlight: parseSize(d.maxBytesInFlight!),
    startupRampMs: parseDuration(d.startupRamp!),
    maxReceivedHeaders: d.maxReceivedHeaders!,
    dnsServers: servers,
    dnsTimeoutMs: parseDuration(d.dns!.timeout!),
    mxPort: d.mxPort!,
    mtaSts: d.mtaSts!,
    connectTimeoutMs: parseDuration(d.connectTimeout!),
  };
}

/** A resolver address (`ip`, `ip:port`, `[ipv6]:port`, bare IPv6) as node:dns setServers takes it, port 53 unless given; null when it is none. */
export function resolverAddress(text: string): string | null {
  const m = text.match(/^\[([^\]]+)\](?::(\d+))?$/) ?? text.match(/^([^:]+)(?::(\d+))?$/) ?? (isIP(text) === 6 ? [text, text] : null);
  const host = m?.[1] ?? '';
  const port = m?.[2] !== undefined ? Number(m[2]) : 53;
  if (!isIP(host) || !(port > 0 && port < 65536)) return null;
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

const MIN_TOKEN = 16;

/** The ops endpoint: where it listens, and the token /status and /-/reload need (beyond loopback, always). */
export function checkListen(ctx: LoadContext, listen: string, tokenFile: string | undefined): { host: string; port: number; token: Secret | null } {
  const m = listen.match(/^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/);
  const host = m?.[1] ?? m?.[2] ?? '';
  const port = Number(m?.[3]);
  if (!isIP(host) && host !== 'localhost') {
    ctx.error('MP_ADDRESS', ['observability', 'listen'], `'${host}' is not an IP address`);
  }
  if (!(port >= 0 && port <= 65535)) ctx.error('MP_ADDRESS', ['observability', 'listen'], `port ${m?.[3]} is out of range`);
  let token: Secret | null = null;
  if (tokenFile !== undefined) {
    const text = ctx.readFile(['observability', 'tokenFile'], tokenFile);
    const value = text?.replace(/\r?\n$/, '') ?? null;
    if (value !== null && value.length < MIN_TOKEN) ctx.error('MP_OPS_TOKEN', ['observability', 'tokenFile'], `the token must be at least ${MIN_TOKEN} characters (it has ${value.length})`);
    else if (value !== null) token = new Secret(value, 'password');
  } else if (host && !isLoopback(host)) {
    ctx.error('MP_OPS_TOKEN', ['observability', 'listen'], `${host} is not a loopback address: set observability.tokenFile, a bearer token that /status and POST /-/reload will require`);
  }
  return { host, port, token };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}
