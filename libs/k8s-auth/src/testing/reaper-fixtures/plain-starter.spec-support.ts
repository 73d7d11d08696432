/**
 * A process that starts a control plane, reports it (argv[2] is the state file) and waits to be stopped, for
 * reaper.integration.spec.ts. Run with `node -r @swc-node/register`.
 */
import { startControlPlane } from '../control-plane';
import { writeStarterState } from './starter-state.spec-support';

const stateFile = process.argv[2];
void startControlPlane().then((cp) => {
  writeStarterState(stateFile, cp);
  setInterval(() => undefined, 60_000);
});
