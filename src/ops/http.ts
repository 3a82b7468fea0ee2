// The operations HTTP endpoint: /healthz, /readyz and /metrics are open (probes and
// Prometheus); /status and POST /-/reload need the bearer token of observability.tokenFile
// whenever one is configured (always, beyond loopback: validation insists on one there).
// GET /.well-known/mta-sts.txt with `Host: mta-sts.<one of our domains>` serves our MTA-STS
// policy (RFC 8461), so that an Ingress or proxy can route that host's HTTPS to it.
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { Secret } from '../config/secret.js';
import type { Logger } from './logger.js';

export interface OpsHandlers {
  ready(): boolean;
  status(): unknown;
  reload(): Promise<{ httpStatus: number; body: unknown }>;
  registry: Registry;
  /** the token of the serving config (read at every request: a new token applies at once) */
  token(): Secret | null;
  /** the serving MTA-STS policy file and the domains it is published for (null: none serving yet) */
  mtaSts(): { readonly text: string; readonly domains: ReadonlySet<string> } | null;
  log: Logger;
}

export class OpsServer {
  readonly server: Server;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly h: OpsHandlers,
  ) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: Error) => send(res, 500, 'text/plain', `internal error: ${err.message}\n`));
    });
    this.server.on('error', () => {});
  }

  get boundPort(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : this.port;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen({ port: this.port, host: this.host }, () => {
        this.server.removeListener('error', onError);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if ((path === '/-/reload' || path === '/status') && !this.authorized(req)) {
      this.h.log.warn('ops request refused: missing or wrong bearer token', { client: req.socket.remoteAddress, path });
      return send(res, 401, 'text/plain', 'unauthorized: send Authorization: Bearer <the token of observability.tokenFile>\n', { 'www-authenticate': 'Bearer realm="mailplane"' });
    }
    if (path === '/-/reload') {
      if (req.method !== 'POST' && req.method !== 'PUT') return send(res, 405, 'text/plain', 'use POST\n', { allow: 'POST' });
      const r = await this.h.reload();
      return send(res, r.httpStatus, 'application/json', `${JSON.stringify(r.body, null, 2)}\n`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET' });
    if (path === MTA_STS_PATH) return this.mtaSts(req, res);
    switch (path) {
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      case '/readyz':
        return this.h.ready() ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', 'not ready\n');
      case '/metrics':
        return send(res, 200, this.h.registry.contentType, await this.h.registry.metrics());
      case '/status':
        return send(res, 200, 'application/json', `${JSON.stringify(this.h.status(), null, 2)}\n`);
      default:
        return send(res, 404, 'text/plain', 'not found: try /status, /metrics, /healthz, /readyz or POST /-/reload\n');
    }
  }

  /** Our policy for `Host: mta-sts.<domain>` of one of our domains; 404 for any other host. */
  private mtaSts(req: IncomingMessage, res: ServerResponse): void {
    const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    const p = this.h.mtaSts();
    const domain = host.startsWith('mta-sts.') ? host.slice('mta-sts.'.length) : '';
    if (!p || !p.domains.has(domain)) return send(res, 404, 'text/plain', 'no MTA-STS policy for this host\n');
    send(res, 200, 'text/plain', p.text, { 'cache-control': 'max-age=300' });
  }

  /** No token configured (loopback only), or the right one, compared in constant time. */
  private authorized(req: IncomingMessage): boolean {
    const token = this.h.token();
    if (!token) return true;
    const given = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const digest = (s: string) => createHash('sha256').update(s).digest();
    return timingSafeEqual(digest(given), digest(token.reveal()));
  }
}

const MTA_STS_PATH = '/.well-known/mta-sts.txt';

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(body);
}
