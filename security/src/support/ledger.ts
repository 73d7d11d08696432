import type { LoggerService } from '@nestjs/common';

/** Where a scanned text came from. `log` lines count towards the secrets summary's "N log lines". */
export type TextKind = 'log' | 'body' | 'metrics';

export interface Leak {
  /** e.g. `log secret-store-1.log:17`, `body GET /` */
  where: string;
  /** The first token fragment found, shortened: enough to find it again, not a usable credential. */
  fragment: string;
}

/** Length of the shortest token fragment that counts as a leak. */
export const FRAGMENT_LENGTH = 16;
const BASE64URL_RUN = new RegExp(`[A-Za-z0-9_-]{${FRAGMENT_LENGTH},}`, 'g');

/**
 * Every credential the suite held (minted, projected, forged, kubeconfig tokens) and every text
 * the services produced for it to read (logs, response bodies, metrics), so that the secrets area
 * can look for any token, or any 16-character piece of one, in any of them.
 */
export class SecretLedger {
  private readonly tokens = new Set<string>();
  private readonly texts: { kind: TextKind; where: string; text: string }[] = [];

  addToken(token: string | undefined): void {
    if (token) this.tokens.add(token);
  }

  get tokenCount(): number {
    return this.tokens.size;
  }

  record(kind: TextKind, where: string, text: string): void {
    if (text) this.texts.push({ kind, where, text });
  }

  /** Each 16-character window of each segment (header, payload, signature) of each token. */
  private fragments(): Set<string> {
    const fragments = new Set<string>();
    for (const token of this.tokens) {
      for (const segment of token.split('.')) {
        for (let i = 0; i + FRAGMENT_LENGTH <= segment.length; i++) {
          fragments.add(segment.slice(i, i + FRAGMENT_LENGTH));
        }
      }
    }
    return fragments;
  }

  /**
   * Scans the recorded texts and `extraLogs` (whole log files, by name). Only runs of base64url
   * characters can hold a fragment, so only those are slid over.
   */
  scan(extraLogs: { where: string; text: string }[]): { leaks: Leak[]; lines: Record<TextKind, number> } {
    const fragments = this.fragments();
    const leaks: Leak[] = [];
    const lines: Record<TextKind, number> = { log: 0, body: 0, metrics: 0 };
    const all = [...this.texts, ...extraLogs.map((l) => ({ kind: 'log' as const, ...l }))];
    for (const { kind, where, text } of all) {
      const textLines = text.split('\n');
      if (textLines[textLines.length - 1] === '') textLines.pop();
      lines[kind] += textLines.length;
      textLines.forEach((line, index) => {
        const found = findFragment(line, fragments);
        if (found) leaks.push({ where: `${kind} ${where}:${index + 1}`, fragment: `${found.slice(0, 6)}…` });
      });
    }
    return { leaks, lines };
  }
}

function findFragment(line: string, fragments: Set<string>): string | undefined {
  for (const run of line.match(BASE64URL_RUN) ?? []) {
    for (let i = 0; i + FRAGMENT_LENGTH <= run.length; i++) {
      const window = run.slice(i, i + FRAGMENT_LENGTH);
      if (fragments.has(window)) return window;
    }
  }
  return undefined;
}

/**
 * A Nest logger for the apps the suite runs in-process: every level (debug and verbose included),
 * kept in the ledger rather than printed.
 */
export class CollectingLogger implements LoggerService {
  lines = 0;

  constructor(private readonly ledger: SecretLedger) {}

  log(message: unknown, ...rest: unknown[]): void {
    this.write('LOG', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('ERROR', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('WARN', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('DEBUG', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('VERBOSE', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('FATAL', message, rest);
  }

  private write(level: string, message: unknown, rest: unknown[]): void {
    const parts = [message, ...rest].map((part) =>
      part instanceof Error ? `${part.message}\n${part.stack ?? ''}` : typeof part === 'string' ? part : json(part),
    );
    const text = `${level} ${parts.join(' ')}`;
    this.lines += text.split('\n').length;
    this.ledger.record('log', 'in-process', text);
  }
}

function json(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
