import { promises as fs, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootId, isGone, isSameProcess, pidNamespace, type ProcessRef, processRef } from './process-identity';

/**
 * Owner records of control-plane folders, and the removal of those whose owner died with nobody to clean up (its
 * reaper killed too). A folder is removed only when its record proves the owner gone; a server is killed only when it
 * provably is the one recorded. Folders without a record (the CLI's `up`, older versions) and folders recorded on
 * another boot, machine or container (a shared tmpdir: their pids mean nothing here) are never touched.
 */

const OWNER_FILE = 'owner.json';
const KILL_WAIT_MS = 10_000;

interface OwnerRecord {
  bootId?: string;
  pidNamespace?: string;
  owner: ProcessRef;
  servers: (ProcessRef & { name: string })[];
}

/** Writes (or rewrites) `dir`'s owner record: this process and the servers it started there. */
export function recordOwner(dir: string, servers: { name: string; pid?: number }[]): void {
  const record: OwnerRecord = {
    bootId: bootId(),
    pidNamespace: pidNamespace(),
    owner: processRef(process.pid),
    servers: servers.flatMap((s) => (s.pid === undefined ? [] : [{ name: s.name, ...processRef(s.pid) }])),
  };
  // Written in full, then renamed: a reader never sees half a record.
  const temporary = join(dir, `${OWNER_FILE}.${process.pid}`);
  writeFileSync(temporary, JSON.stringify(record));
  renameSync(temporary, join(dir, OWNER_FILE));
}

/**
 * Removes the folders `<parent>/<prefix>*` whose owner record proves the owner gone, after killing the servers it
 * proves still running. Returns a line per folder removed.
 */
export async function removeLeftovers(parent: string, prefix: string): Promise<string[]> {
  const names = await fs.readdir(parent).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith(prefix))) {
    const dir = join(parent, name);
    const record = await readRecord(dir);
    if (!record || record.bootId !== bootId() || record.pidNamespace !== pidNamespace()) continue;
    if (!isGone(record.owner)) continue;
    const running = record.servers.filter((s) => !isGone(s));
    // A server still running that cannot be told from a later process with its pid: leave it all alone.
    if (!running.every(isSameProcess)) continue;
    for (const server of running) signalGroup(server.pid, 'SIGKILL');
    await waitUntilGone(running);
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 });
    const killed = running.map((s) => `${s.name} ${s.pid}`).join(', ');
    removed.push(`${dir} (left by process ${record.owner.pid}${killed ? `; killed ${killed}` : ''})`);
  }
  return removed;
}

async function readRecord(dir: string): Promise<OwnerRecord | undefined> {
  try {
    const record = JSON.parse(await fs.readFile(join(dir, OWNER_FILE), 'utf8')) as OwnerRecord;
    const valid = (r: ProcessRef) => Number.isInteger(r?.pid) && r.pid > 0;
    return valid(record.owner) && Array.isArray(record.servers) && record.servers.every(valid) ? record : undefined;
  } catch {
    return undefined;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function waitUntilGone(refs: ProcessRef[]): Promise<void> {
  const deadline = Date.now() + KILL_WAIT_MS;
  while (refs.some((r) => !isGone(r)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}
