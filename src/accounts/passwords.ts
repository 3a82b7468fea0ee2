// Password hashing and verification. Verification never blocks the event loop: bcrypt and
// argon2 run natively on the libuv pool, SHA-crypt (pure JS) in a worker thread.
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import * as argon2 from '@node-rs/argon2';
import * as bcrypt from '@node-rs/bcrypt';
import type { HashScheme } from '../config/hashes.js';

export type NewHashScheme = 'argon2id' | 'bcrypt' | 'sha512-crypt';

const ARGON2ID = 2; // argon2.Algorithm.Argon2id (a const enum, not importable at run time)

export async function hashPassword(password: string, scheme: NewHashScheme = 'argon2id'): Promise<string> {
  switch (scheme) {
    case 'argon2id':
      // OWASP's recommended minimum: 19 MiB, 2 iterations, 1 lane.
      return argon2.hash(password, { algorithm: ARGON2ID, memoryCost: 19456, timeCost: 2, parallelism: 1 });
    case 'bcrypt':
      return bcrypt.hash(password, 12);
    case 'sha512-crypt':
      return shaCrypt('encrypt', password, `$6$${randomBytes(12).toString('base64').replace(/[+=]/g, '.').slice(0, 16)}`);
  }
}

export async function verifyPassword(password: string, hash: string, scheme: HashScheme): Promise<boolean> {
  switch (scheme) {
    case 'bcrypt':
      return bcrypt.verify(password, hash);
    case 'argon2id':
      return argon2.verify(hash, password);
    case 'sha512-crypt':
    case 'sha256-crypt':
      return (await shaCrypt('verify', password, hash)) === 'true';
  }
}

// One worker serves all SHA-crypt work; requests are answered in order.
let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { resolve: (v: string) => void; reject: (e: Error) => void }>();

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.unixcrypt).then((uc) => {
  parentPort.on('message', ({ id, op, password, arg }) => {
    try {
      const out = op === 'verify' ? String(uc.verify(password, arg)) : uc.encrypt(password, arg);
      parentPort.postMessage({ id, out });
    } catch (e) {
      parentPort.postMessage({ id, error: String(e && e.message || e) });
    }
  });
});`;

function shaCrypt(op: 'verify' | 'encrypt', password: string, arg: string): Promise<string> {
  if (!worker) {
    worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { unixcrypt: import.meta.resolve('unixcrypt') } });
    worker.on('message', (m: { id: number; out?: string; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (pending.size === 0) worker?.unref(); // idle: do not hold the process open
      if (m.error !== undefined) p?.reject(new Error(m.error));
      else p?.resolve(m.out ?? '');
    });
    worker.on('error', (e: Error) => {
      for (const p of pending.values()) p.reject(e);
      pending.clear();
      worker = undefined;
    });
  }
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker!.ref();
    worker!.postMessage({ id, op, password, arg });
  });
}
