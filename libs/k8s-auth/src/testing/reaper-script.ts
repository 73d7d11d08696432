/**
 * The reaper's program, run with `node -e`: plain JavaScript in a string, so that it runs the same from the
 * published package and from the TypeScript sources under Jest or swc, with no file to resolve and no loader.
 *
 * It reads JSON lines on stdin from the process that started it:
 *   ["watch", pid, startTime | null]   a process group to kill if that process dies
 *   ["forget", pid]                    no longer
 *   ["dir", path]                      a folder to remove if that process dies
 *   ["keep", path]                     no longer
 * End of input means that process closed the pipe: on purpose with nothing left to watch, or by dying (any way,
 * SIGKILL included). The reaper then SIGKILLs each group still watched whose leader is still the process watched
 * (same start time in /proc; where /proc is missing, a pid in use counts), waits until they are gone, removes the
 * folders, and exits.
 */
export const REAPER_SCRIPT = String.raw`
'use strict';
process.title = 'k8s-auth-reaper';
const { readFileSync, rmSync } = require('node:fs');
const groups = new Map();
const dirs = new Set();

function startTime(pid) {
  try {
    const stat = readFileSync('/proc/' + pid + '/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

function stillWatched(pid, start) {
  if (start !== null) return startTime(pid) === start;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

function handle(line) {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return;
  }
  const [verb, arg, start] = message;
  if (verb === 'watch') groups.set(arg, start);
  else if (verb === 'forget') groups.delete(arg);
  else if (verb === 'dir') dirs.add(arg);
  else if (verb === 'keep') dirs.delete(arg);
}

let reaping = false;

function reap() {
  if (reaping) return;
  reaping = true;
  const doomed = [...groups].filter(([pid, start]) => stillWatched(pid, start));
  for (const [pid] of doomed) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {}
  }
  // A killed server may still hold files open in its folder for a moment.
  const deadline = Date.now() + 10000;
  const finish = () => {
    if (Date.now() < deadline && doomed.some(([pid, start]) => stillWatched(pid, start))) {
      setTimeout(finish, 50);
      return;
    }
    for (const dir of dirs) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {}
    }
    process.exit(0);
  };
  finish();
}

let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  const lines = (pending + chunk).split('\n');
  pending = lines.pop();
  lines.forEach(handle);
});
process.stdin.on('end', reap);
process.stdin.on('error', reap);
`;
