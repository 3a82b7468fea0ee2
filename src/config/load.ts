// Load = read → YAML with positions → schema (defaults applied) → semantic checks →
// normalize. Every finding of every stage is reported at once, sorted by position.
//
// A running server reloads through loadConfigFile/loadConfigText, which never block
// the event loop: the config and every file it references are read with fs.promises before
// the (synchronous, I/O-free) checks and normalize use them. The checks find the referenced files
// themselves: a first pass notes every file they ask for (LoadContext.missing), those are read
// at once, and the checks run again on the contents, so no second list of "which keys name a
// file" can fall out of step with them.
import { readFile as readFileAsync } from 'node:fs/promises';
import { resolve } from 'node:path';
import { checkLdap, checkLocalUsers } from './check-accounts.js';
import { checkCluster } from './check-cluster.js';
import { checkDkim } from './check-dkim.js';
import { checkMailboxes } from './check-mailboxes.js';
import { checkInbound } from './check-inbound.js';
import { checkDns } from './check-dns.js';
import { checkDomains, checkHostname } from './check-names.js';
import { checkPlaintextPasswords } from './check-plaintext.js';
import { checkDelivery, checkListen, checkRelay } from './check-relay.js';
import { checkListeners, checkRanges, checkSubmissionLogin, checkTls, checkTrusted, overlaps } from './check-smtp.js';
import { checkStorage } from './check-storage.js';
import { LoadContext, readFilesAsync, type FileRead } from './context.js';
import type { DesiredState } from './desired-state.js';
import { issue, sortIssues, type ConfigIssue } from './issues.js';
import { normalize, type Resolved } from './normalize.js';
import { prepareSchema, validateSchema } from './schema.js';
import { ConfigSource } from './source.js';
import type { MailserverConfig } from './types.generated.js';

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly now?: number;
  /** Loading for `run` (unset environment variables are errors) rather than `validate`. */
  readonly forRun?: boolean;
  /** Base for relative paths when the text has no file of its own (the embedded quick start). */
  readonly baseDir?: string;
}

export interface LoadResult {
  readonly state: DesiredState | null;
  readonly errors: readonly ConfigIssue[];
  readonly warnings: readonly ConfigIssue[];
  /** the config file itself could not be read */
  readonly unreadable: boolean;
  /** the exact text that was loaded */
  readonly text: string | null;
  /** every file this load read or tried to read, the config first: what a watcher polls */
  readonly files?: readonly string[];
  /** those of `files` that could not be read */
  readonly unread?: readonly string[];
  /**
   * The load failed only in ways a write in progress explains — a file missing (deleted or
   * renamed away, about to come back), a certificate without its new key yet (or the other way
   * round), an empty config: worth another look a moment later before it counts as invalid.
   */
  readonly settle?: boolean;
}

/** Reads and loads a config file without blocking the event loop: what a running server uses. */
export async function loadConfigFile(file: string, opts: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFileAsync(file, 'utf8');
  } catch (e) {
    return { ...unreadable(file, e), files: [resolve(file)], unread: [resolve(file)], settle: (e as NodeJS.ErrnoException).code === 'ENOENT' };
  }
  return loadConfigText(file, text, opts);
}

/** Loads config text (e.g. the embedded quick start); referenced files are read asynchronously. */
export async function loadConfigText(file: string, text: string, opts: LoadOptions = {}): Promise<LoadResult> {
  await prepareSchema();
  const parsed = parse(file, text, opts);
  if ('result' in parsed) return { ...parsed.result, files: [resolve(file)], unread: [], settle: text.trim() === '' };
  const reads = new Map<string, FileRead>();
  for (;;) {
    const pass = check(parsed, reads, opts);
    if (pass.ctx.missing.size) {
      await readFilesAsync(pass.ctx.missing, reads); // every missing path gets an entry: this ends
      continue;
    }
    const result = finish(parsed, pass);
    const unread = [...reads].filter(([, r]) => 'error' in r);
    // a missing file, a certificate pair or a DKIM key in the middle of a renewal; anything else is what it says
    const settle =
      result.errors.length > 0 &&
      result.errors.every((i) => i.code === 'MP_TLS_FILE' || i.code === 'MP_DKIM_KEY' || i.code === 'MP_FILE_UNREADABLE') &&
      unread.every(([, r]) => 'error' in r && (r.error as NodeJS.ErrnoException).code === 'ENOENT');
    return { ...result, files: [resolve(file), ...reads.keys()], unread: unread.map(([p]) => p), settle };
  }
}

function unreadable(file: string, e: unknown): LoadResult {
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
  const err = issue('error', 'MP_FILE_UNREADABLE', { file, line: 1, col: 1 }, '', `cannot read config file: ${why}`);
  return { state: null, errors: [err], warnings: [], unreadable: true, text: null };
}

interface Parsed {
  readonly file: string;
  readonly text: string;
  readonly source: ConfigSource;
  /** the parsed value, schema defaults filled in */
  readonly value: object;
  readonly schemaIssues: readonly ConfigIssue[];
  /** the time certificates are checked against, the same for every pass */
  readonly now: number;
}

/** YAML and schema: done once per load (the schema fills defaults into the value in place). */
function parse(file: string, text: string, opts: LoadOptions): Parsed | { result: LoadResult } {
  const { source, errors: yamlErrors } = ConfigSource.parse(file, text);
  if (yamlErrors.length) return { result: done(yamlErrors, text) };
  const value = source.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { result: done([issue('error', 'MP_NOT_A_MAPPING', { file, line: 1, col: 1 }, '', 'the file must be a YAML mapping (key: value lines), starting with version: 1')], text) };
  }
  return { file, text, source, value, schemaIssues: validateSchema(value, source), now: opts.now ?? Date.now() };
}

interface Pass {
  readonly ctx: LoadContext;
  readonly cfg: MailserverConfig;
  /** what normalize needs, or null when there are errors */
  readonly resolved: Resolved | null;
}

/**
 * The semantic checks over the parsed value, with referenced files looked up in reads. When
 * ctx.missing is not empty the pass is incomplete and is thrown away once those are read.
 */
function check(parsed: Parsed, reads: ReadonlyMap<string, FileRead>, opts: LoadOptions): Pass {
  const { file, source, value } = parsed;
  const ctx = new LoadContext(source, opts.env ?? process.env, parsed.now, opts.baseDir, reads);
  ctx.issues.push(...parsed.schemaIssues);
  checkPlaintextPasswords(ctx);
  // Semantic checks skip what the schema already found broken; the set is fixed here so that
  // one semantic finding does not hide another.
  const schemaErrors = ctx.issues.filter((i) => i.severity === 'error').map((i) => i.path);
  const brokenOne = (p: string) => schemaErrors.some((e) => e === p || e.startsWith(`${p}.`) || e.startsWith(`${p}[`));
  const broken = (...prefixes: string[]) => prefixes.some(brokenOne);

  // Until the schema passes, any value may have any type: read through list()/map().
  const cfg = value as MailserverConfig;
  const smtp = map(cfg.smtp) as NonNullable<MailserverConfig['smtp']>;
  const domains = broken('domains') ? [] : checkDomains(ctx, list(cfg.domains));
  const hostname = broken('hostname') || typeof cfg.hostname !== 'string' ? '' : checkHostname(ctx, cfg.hostname);
  checkListeners(ctx, list(smtp.listeners), brokenOne);
  if (!broken('smtp.auth.required')) checkSubmissionLogin(ctx, smtp, brokenOne);
  const tls = broken('smtp.tls', 'smtp.listeners', 'hostname') ? null : checkTls(ctx, smtp, hostname);
  const auth = map(smtp.auth) as NonNullable<typeof smtp.auth>;
  const exemptEntries = checkRanges(ctx, 'exemptClients', list(auth.exemptClients), brokenOne);
  const lanEntries = checkRanges(ctx, 'lanNetworks', list(auth.lanNetworks), brokenOne);
  // judged together: the open-relay check; a lanBypass the schema refused counts as on
  checkTrusted(ctx, exemptEntries, lanEntries, auth.lanBypass !== false);
  const exemptClients = exemptEntries.map((e) => e.cidr);
  const lanNetworks = lanEntries.map((e) => e.cidr);
  const accounts = map(cfg.accounts) as NonNullable<MailserverConfig['accounts']>;
  const local = accounts.type === 'ldap' ? null : checkLocalUsers(ctx, accounts, brokenOne);
  const ldap = !broken('accounts') && accounts.type === 'ldap' && accounts.ldap ? checkLdap(ctx, accounts.ldap) : null;
  const relay = broken('relay') ? null : checkRelay(ctx, cfg.relay ?? {}, { forRun: opts.forRun ?? false });
  const delivery = broken('delivery') ? null : checkDelivery(ctx, cfg.delivery ?? {});
  const mailboxGroup = checkStorage(ctx, map(cfg.storage), { forRun: opts.forRun ?? false }, brokenOne);
  const dkim = checkDkim(ctx, map(cfg.dkim), broken('domains') ? null : domains, brokenOne);
  const mailboxes = checkMailboxes(
    ctx,
    map(cfg.mailboxes),
    { accountsType: accounts.type === 'ldap' ? 'ldap' : 'local', dataDir: broken('storage.dataDir') || typeof cfg.storage?.dataDir !== 'string' ? null : ctx.resolvePath(cfg.storage.dataDir) },
    brokenOne,
  );
  const spamFilter = broken('inbound') ? null : checkInbound(ctx, map(cfg.inbound));
  const cluster = broken('cluster')
    ? null
    : checkCluster(
        ctx,
        map(cfg.cluster),
        {
          listeners: list(smtp.listeners),
          exemptClients: broken('smtp.auth.exemptClients') ? [] : list(auth.exemptClients),
          store: broken('mailboxes') ? null : ((map(cfg.mailboxes) as NonNullable<MailserverConfig['mailboxes']>).store ?? 'maildir'),
          smtpEnabled: smtp.enabled !== false,
        },
        brokenOne,
      );
  const dns = checkDns(ctx, cfg, brokenOne);
  const listen = broken('observability') ? null : checkListen(ctx, cfg.observability?.listen ?? '', cfg.observability?.tokenFile);
  if (listen && !broken('smtp.listeners')) {
    list(smtp.listeners).forEach((l, i) => {
      if (smtp.enabled !== false && l.port === listen.port && overlaps(l.address ?? null, listen.host)) {
        ctx.error('MP_PORT_CONFLICT', ['observability', 'listen'], `port ${listen.port} is also used by smtp.listeners[${i}] (${l.name})`);
      }
    });
  }

  const errors = ctx.issues.filter((i) => i.severity === 'error');
  if (ctx.missing.size || errors.length || !relay || !listen || !delivery || !mailboxes || !dns || !cluster) return { ctx, cfg, resolved: null };
  return {
    ctx,
    cfg,
    resolved: {
      configPath: resolve(file),
      hostname,
      domains,
      tls,
      exemptClients,
      lanNetworks,
      local,
      ldap,
      relay,
      delivery,
      listen,
      dataDir: ctx.resolvePath(cfg.storage!.dataDir!),
      mailboxGroup,
      dkim,
      mailboxes,
      spamFilter,
      dns: dns.dns,
      mtaSts: dns.mtaSts,
      cluster,
      files: ctx.files,
    },
  };
}

function finish(parsed: Parsed, pass: Pass): LoadResult {
  if (!pass.resolved) return done(pass.ctx.issues, parsed.text);
  return { ...done(pass.ctx.issues, parsed.text), state: normalize(pass.cfg, pass.resolved) };
}

function list<T>(v: readonly T[] | T[] | undefined): T[] {
  return Array.isArray(v) ? [...v] : [];
}

function map(v: unknown): object {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {};
}

function done(all: readonly ConfigIssue[], text: string): LoadResult {
  const sorted = sortIssues(all);
  return {
    state: null,
    errors: sorted.filter((i) => i.severity === 'error'),
    warnings: sorted.filter((i) => i.severity === 'warning'),
    unreadable: false,
    text,
  };
}
