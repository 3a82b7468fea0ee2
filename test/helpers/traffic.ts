// Traffic of the kinds the metrics and /status report on, for the tests that read them.
import { USERS, type Env } from './server.js';
import { message, SmtpClient } from './smtp.js';

/**
 * A submission session: STARTTLS, a failed then a successful AUTH as alice, and one message to
 * a local and a remote recipient. Returns the client, still open.
 */
export async function aliceSubmits(env: Env, subject: string): Promise<SmtpClient> {
  const c = (await SmtpClient.connect({ port: env.ports.submission })).client;
  await c.ehlo();
  await c.starttls();
  await c.ehlo();
  await c.authPlain('alice', 'wrong-password');
  await c.authPlain('alice', USERS.alice.password);
  await c.send('alice@example.com', ['bob@example.com', 'friend@elsewhere.example'], message(subject));
  return c;
}
