import { promises as fs } from 'node:fs';
import { answered, call } from './http';
import type { SecretLedger } from './ledger';

// What a service did, read from its own log and metrics: the cause of an answer, where its time would say nothing
// certain on a busy machine.

/** How many times `pattern` (global) occurs in the log file `file`. */
export async function logCount(file: string, pattern: RegExp): Promise<number> {
  return ((await fs.readFile(file, 'utf8')).match(pattern) ?? []).length;
}

/** The value of the counter `name{label="value"}` on the service's GET /metrics (0 while it has none). */
export async function metricValue(
  ledger: SecretLedger,
  url: string,
  name: string,
  [label, value]: [string, string],
): Promise<number> {
  const res = await call(ledger, `${url}/metrics`);
  if (!answered(res) || res.status !== 200) throw new Error(`GET ${url}/metrics answered ${res.status}`);
  const line = new RegExp(`^${name}\\{${label}="${value}"\\} (\\d+)$`, 'm').exec(res.body);
  return line ? Number(line[1]) : 0;
}
