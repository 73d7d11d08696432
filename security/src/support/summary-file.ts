import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where the suite leaves its summary lines for the global teardown to print. Both run in the Jest
 * process (maxWorkers: 1), so its pid names the file.
 */
export function summaryFile(pid: number): string {
  return join(tmpdir(), `k8s-auth-security-summary-${pid}.txt`);
}
