import { readFileSync, rmSync } from 'node:fs';
import { summaryFile } from './src/support/summary-file';

/** Prints the line the suite wrote (build time, image sizes, the walkthrough's answers) after Jest's summary. */
export default async function globalTeardown(): Promise<void> {
  const file = summaryFile(process.pid);
  let summary: string;
  try {
    summary = readFileSync(file, 'utf8');
  } catch {
    return; // the suite stopped before it had figures
  }
  rmSync(file, { force: true });
  process.stdout.write(`\n${summary}\n`);
}
