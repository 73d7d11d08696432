import { renameSync, writeFileSync } from 'node:fs';
import type { ControlPlane } from '../control-plane';
import { type ProcessRef, processRef } from '../process-identity';
import { reaperPid } from '../reaper';

/**
 * What a starter fixture reports once its control plane is ready, for reaper.integration.spec.ts: pids with their
 * start times taken while they surely run, so that a later process with a reused pid is never taken for them.
 */
export interface StarterState {
  starter: ProcessRef;
  /** Undefined where no reaper runs. */
  reaper?: ProcessRef;
  dir: string;
  servers: (ProcessRef & { name: string })[];
}

export function writeStarterState(file: string, cp: ControlPlane): void {
  const { dir, pids } = cp.state ?? { dir: '', pids: { etcd: 0, kubeApiServer: 0 } };
  const reaper = reaperPid();
  const state: StarterState = {
    starter: processRef(process.pid),
    reaper: reaper === undefined ? undefined : processRef(reaper),
    dir,
    servers: [
      { name: 'etcd', ...processRef(pids.etcd) },
      { name: 'kube-apiserver', ...processRef(pids.kubeApiServer) },
    ],
  };
  // Renamed into place: the spec never reads half a file.
  writeFileSync(`${file}.tmp`, JSON.stringify(state));
  renameSync(`${file}.tmp`, file);
}
