import { readFileSync, rmSync } from 'node:fs';
import { summaryFile } from './src/support/summary-file';

/** Prints the summary lines the suite wrote (one per area that ran), after Jest's own summary. */
export default async function globalTeardown(): Promise<void> {
  const file = summaryFile(process.pid);
  let summary: string;
  try {
    summary = readFileSync(file, 'utf8');
  } catch {
    return; // no area ran (e.g. a filter matched nothing)
  }
  rmSync(file, { force: true });
  process.stdout.write(`\n${summary}`);
}
