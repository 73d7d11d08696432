import { ensureControlPlaneBinaries } from './src/testing';

// Integration specs start real control planes; the first run builds the binaries, which takes
// minutes and must not count against any test's timeout.
export default async function globalSetup(): Promise<void> {
  await ensureControlPlaneBinaries();
}
