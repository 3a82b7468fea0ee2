// Listening sockets, owned apart from the smtp-server instances they feed. A socket whose
// address:port stays in the config is never closed by a reload: it just hands new
// connections to the Listener of the new generation, while the old one drains.
import { createServer, type Server, type Socket } from 'node:net';

export interface SocketTarget {
  accept(socket: Socket): void;
}

export function bindingKey(address: string | null, port: number): string {
  return `${address ?? '*'}:${port}`;
}

export class Binding {
  readonly server: Server;
  target: SocketTarget | null = null;

  constructor(
    readonly address: string | null,
    readonly port: number,
  ) {
    this.server = createServer((socket) => {
      const t = this.target;
      if (!t) {
        socket.destroy();
        return;
      }
      t.accept(socket);
    });
    this.server.on('error', () => {}); // accept errors (EMFILE) must not crash the process
  }

  get key(): string {
    return bindingKey(this.address, this.port);
  }

  /** The port actually bound (differs from `port` only when 0 was asked for). */
  get boundPort(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : this.port;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.server.removeListener('listening', onListening);
        reject(err);
      };
      const onListening = () => {
        this.server.removeListener('error', onError);
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ port: this.port, host: this.address ?? undefined, backlog: 1024 });
    });
  }

  /** Stops accepting; connections already handed over are not affected. */
  close(): Promise<void> {
    this.target = null;
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
  }
}
