// Preloaded into the fuzzed service (NODE_OPTIONS="--expose-gc --require <this file>"): every 500 ms a
// full garbage collection, then process.memoryUsage() written to $MEMORY_PROBE_FILE. So the suite can
// tell memory the process keeps (a leak) from garbage V8 has not collected yet, which RSS alone cannot.
const { renameSync, writeFileSync } = require('node:fs');

const file = process.env.MEMORY_PROBE_FILE;
if (file && typeof global.gc === 'function') {
  setInterval(() => {
    global.gc();
    // Written aside and renamed over: the suite may read at any moment, and must never see a half-written file.
    writeFileSync(`${file}.tmp`, JSON.stringify(process.memoryUsage()));
    renameSync(`${file}.tmp`, file);
  }, 500).unref();
}
