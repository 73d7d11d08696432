import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where the suite leaves its closing line for the global teardown to print. Both run in the Jest process
 * (maxWorkers: 1, one spec file), so its pid names the file.
 */
export function summaryFile(pid: number): string {
  return join(tmpdir(), `k8s-auth-images-summary-${pid}.txt`);
}
