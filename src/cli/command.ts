// What every CLI command provides; main.ts dispatches on the name.
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  /** exit code for a usage error (default 2) */
  readonly usageExitCode?: number;
  /** Resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** A usage error: printed with the command's usage, exit code 2. */
export class UsageError extends Error {}
