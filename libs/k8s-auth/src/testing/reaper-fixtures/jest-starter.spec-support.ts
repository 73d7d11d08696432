/**
 * A Jest test file whose beforeAll starts a control plane, reports it ($REAPER_STATE_FILE) and hangs, for
 * reaper.integration.spec.ts. Its name keeps it out of the normal test runs; that spec runs it with --testMatch.
 */
import { startControlPlane } from '../control-plane';
import { writeStarterState } from './starter-state.spec-support';

beforeAll(async () => {
  writeStarterState(process.env['REAPER_STATE_FILE'] ?? '', await startControlPlane());
}, 600_000);

// Hangs until the run is stopped, or until this hook times out where the spec sets a timeout. No afterAll stops the
// control plane: what is tested is what stops it when nobody does.
beforeAll(() => new Promise(() => undefined), Number(process.env['REAPER_HANG_TIMEOUT_MS'] ?? 600_000));

it('is never reached: the run is stopped or times out in beforeAll', () => undefined);
