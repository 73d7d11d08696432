import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * How many TCP connections this machine has opened so far (`ActiveOpens` of /proc/net/snmp: every connect(), by
 * every process). Undefined where /proc is not Linux's.
 */
export function tcpActiveOpens(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Tcp:'));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/);
    return Number(values[names.indexOf('ActiveOpens')]);
  } catch {
    return undefined;
  }
}

/** The inodes of the TCP sockets that process `pid` holds to remote port `port` right now. */
export function socketsTo(pid: number, port: number): string[] {
  try {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match) inodes.add(match[1]);
      } catch {
        // closed meanwhile
      }
    }
    const portHex = port.toString(16).toUpperCase().padStart(4, '0');
    const found: string[] = [];
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const fields = line.trim().split(/\s+/);
        // fields: sl local_address rem_address st ... inode (index 9)
        if (fields.length > 9 && fields[2].endsWith(`:${portHex}`) && inodes.has(fields[9])) found.push(fields[9]);
      }
    }
    return found;
  } catch {
    return [];
  }
}

/** Samples `socketsTo(pid, port)` every `everyMs` until stopped: every connection seen, by inode. */
export function watchSockets(pid: number, port: number, everyMs = 20): { stop(): Set<string> } {
  const seen = new Set<string>();
  const sample = () => socketsTo(pid, port).forEach((inode) => seen.add(inode));
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return seen;
    },
  };
}
