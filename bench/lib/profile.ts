import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  /** Busy time sampled (idle left out). */
  totalMs: number;
  /** Self time by function, largest first. */
  self: Array<{ name: string; ms: number; share: number }>;
  /** Time spent inside each of `inclusive` (the function and everything it called), by function name. */
  inclusive: Record<string, { ms: number; share: number }>;
}

/** Reads a `.cpuprofile` written by `node --cpu-prof`: where the samples fell. */
export function summarizeProfile(file: string, inclusive: string[], top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + (deltas[i] ?? 0));
  // Shares are of the busy time: samples where the process waited for work ('(idle)') are left out.
  for (const id of [...selfUs.keys()]) if (byId.get(id)?.callFrame.functionName === '(idle)') selfUs.delete(id);
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const share = (us: number) => us / totalUs;

  const label = (n: ProfileNode) => {
    const { functionName, url, lineNumber } = n.callFrame;
    const where = url ? `${basename(url)}:${lineNumber + 1}` : '';
    return `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
  };
  const selfByName = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node) selfByName.set(label(node), (selfByName.get(label(node)) ?? 0) + us);
  }

  // Inclusive time: each sample counts once for a name even if the name is on its stack several times.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const wanted = new Set(inclusive);
  const inclusiveUs = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const names = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = byId.get(at)?.callFrame.functionName ?? '';
      if (wanted.has(name)) names.add(name);
    }
    for (const name of names) inclusiveUs.set(name, (inclusiveUs.get(name) ?? 0) + us);
  }

  return {
    totalMs: totalUs / 1000,
    self: [...selfByName.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: share(us) })),
    inclusive: Object.fromEntries(
      inclusive.map((name) => [
        name,
        { ms: (inclusiveUs.get(name) ?? 0) / 1000, share: share(inclusiveUs.get(name) ?? 0) },
      ]),
    ),
  };
}

/**
 * Where the time inside every call of `root` went, by callee, `depth` levels down (shares of busy time). Code that
 * runs after an `await` shows up under the microtask queue, not under the caller.
 */
export function breakdown(
  file: string,
  root: string,
  depth = 1,
): Array<{ name: string; share: number; level: number }> {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + (deltas[i] ?? 0));
  let busyUs = 0;
  for (const [id, us] of selfUs) if (byId.get(id)?.callFrame.functionName !== '(idle)') busyUs += us;
  const totals = new Map<number, number>();
  const total = (id: number): number => {
    const known = totals.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id);
    const sum = (selfUs.get(id) ?? 0) + (node?.children ?? []).reduce((a, c) => a + total(c), 0);
    totals.set(id, sum);
    return sum;
  };
  const label = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${basename(n.callFrame.url)}`.trim();
  const rows: Array<{ name: string; share: number; level: number }> = [];
  const roots = profile.nodes.filter((n) => n.callFrame.functionName === root).map((n) => n.id);
  rows.push({ name: root, share: roots.reduce((a, id) => a + total(id), 0) / busyUs, level: 0 });
  const walk = (ids: number[], level: number) => {
    const groups = new Map<string, number[]>();
    for (const id of ids) {
      for (const child of byId.get(id)?.children ?? []) {
        const node = byId.get(child);
        if (node) groups.set(label(node), [...(groups.get(label(node)) ?? []), child]);
      }
    }
    const sorted = [...groups.entries()]
      .map(([name, members]) => ({ name, members, us: members.reduce((a, c) => a + total(c), 0) }))
      .sort((a, b) => b.us - a.us);
    for (const group of sorted) {
      if (group.us / busyUs < 0.002) continue;
      rows.push({ name: group.name, share: group.us / busyUs, level });
      if (level < depth) walk(group.members, level + 1);
    }
  };
  walk(roots, 1);
  return rows;
}
