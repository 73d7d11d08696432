import { readFileSync, readlinkSync } from 'node:fs';

/**
 * Tells a process from a later one that got its pid: Linux's /proc/<pid>/stat start time (clock ticks since boot)
 * and boot id. Where /proc is missing (macOS) only "the pid exists" can be told.
 */

/** The start time of `pid`; undefined when it is gone, a zombie, or /proc is missing. */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: fields are counted after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

/** This boot's id, so that start times of another boot are never compared; undefined without /proc. */
export function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** This process's pid namespace (containers have their own); undefined without /proc. */
export function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/** Whether a process holds `pid` (a zombie counts as gone where /proc tells). */
export function pidInUse(pid: number): boolean {
  if (hasProcFs()) return startTimeOf(pid) !== undefined;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let procFs: boolean | undefined;

export function hasProcFs(): boolean {
  procFs ??= startTimeOf(process.pid) !== undefined;
  return procFs;
}

/** A process as recorded: its pid and, where /proc exists, its start time. */
export interface ProcessRef {
  pid: number;
  startTime?: string;
}

export function processRef(pid: number): ProcessRef {
  return { pid, startTime: startTimeOf(pid) };
}

/**
 * Whether `ref` is provably still the process it names: needs its start time; without one (no /proc), never.
 */
export function isSameProcess(ref: ProcessRef): boolean {
  return ref.startTime !== undefined && startTimeOf(ref.pid) === ref.startTime;
}

/** Whether `ref` is provably gone: its pid is free, or held by another process (another start time). */
export function isGone(ref: ProcessRef): boolean {
  if (!pidInUse(ref.pid)) return true;
  return ref.startTime !== undefined && startTimeOf(ref.pid) !== ref.startTime;
}
