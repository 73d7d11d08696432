#!/usr/bin/env node
// Keeps the code of libs/k8s-auth/README.md in step with examples/consumer, where it is compiled and tested. A code
// block preceded by a marker is a copy of a file of the repository:
//
//   <!-- snippet: examples/consumer/src/app.module.ts -->                     the whole file
//   <!-- snippet: examples/consumer/src/app.module.ts without // outgoing --> the file without the lines ending so
//   <!-- snippet: examples/consumer/test/auth.e2e-spec.ts from // The auth --> the file from the line starting so
//   <!-- snippet: examples/consumer/package.json jest -->                     { "jest": … } of a JSON file
//
// JSON is compared as data (Prettier lays it out in the README as it likes), everything else as text. Exits with 1,
// naming each snippet that differs from its file. `--write` copies the files into the README instead (run Prettier on
// it after).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const write = process.argv.includes('--write');
const args = process.argv.slice(2).filter((a) => a !== '--write');
const readmes = args.length > 0 ? args : ['libs/k8s-auth/README.md'];
const MARKER = /^<!-- snippet: (\S+)(?: (without (.+)|from (.+)|[\w-]+))? -->$/;

let problems = 0;
let checked = 0;
for (const readme of readmes) {
  const lines = readFileSync(join(root, readme), 'utf8').split('\n');
  const copies = [];
  lines.forEach((line, i) => {
    const marker = MARKER.exec(line);
    if (!marker) return;
    const [, path, variant, dropped, from] = marker;
    const key = variant && !dropped && !from ? variant : undefined; // of a JSON file
    const where = `${readme}:${i + 1} (${path}${variant ? ` ${variant}` : ''})`;
    const block = codeBlockAfter(lines, i + 1);
    if (!block) return report(where, 'no code block follows the marker');
    let file;
    try {
      file = readFileSync(join(root, path), 'utf8');
    } catch (err) {
      return report(where, `cannot read the file: ${err.message}`);
    }
    if (from) {
      const fileLines = file.split('\n');
      const first = fileLines.findIndex((l) => l.trimStart().startsWith(from));
      if (first < 0) return report(where, `no line of the file starts with ${JSON.stringify(from)}`);
      file = fileLines.slice(first).join('\n');
    }
    checked++;
    if (write) {
      const copy = key ? JSON.stringify({ [key]: JSON.parse(file)[key] }, null, 2) : file;
      copies.push({ ...block, text: dropped ? withoutMarked(copy, dropped) : copy.trimEnd() });
      return;
    }
    if (path.endsWith('.json')) {
      const expected = key ? { [key]: JSON.parse(file)[key] } : JSON.parse(file);
      let shown;
      try {
        shown = JSON.parse(block.text);
      } catch (err) {
        return report(where, `the snippet is not JSON: ${err.message}`);
      }
      if (!isDeepStrictEqual(shown, expected)) report(where, 'the snippet differs from the file');
      return;
    }
    const expected = dropped ? withoutMarked(file, dropped) : file;
    if (block.text.trimEnd() !== expected.trimEnd()) report(where, firstDifference(block.text, expected));
  });
  if (write) {
    // From the last block up, so the line numbers of the earlier ones hold.
    for (const copy of copies.reverse()) lines.splice(copy.start, copy.end - copy.start, ...copy.text.split('\n'));
    writeFileSync(join(root, readme), lines.join('\n'));
  }
}
if (write) {
  console.log(`${checked} README snippet(s) copied from their files.`);
  process.exit(problems > 0 ? 1 : 0);
}
if (problems > 0) {
  console.error(`${problems} README snippet(s) differ from examples/consumer: copy the file into the README again.`);
  process.exit(1);
}
console.log(`${checked} README snippet(s) match their files.`);

/** The fenced code block that starts on the first non-empty line from `start`. */
function codeBlockAfter(lines, start) {
  let i = start;
  while (i < lines.length && lines[i].trim() === '') i++;
  const fence = /^(`{3,})\w*$/.exec(lines[i] ?? '');
  if (!fence) return undefined;
  const end = lines.indexOf(fence[1], i + 1);
  if (end < 0) return undefined;
  return { start: i + 1, end, text: lines.slice(i + 1, end).join('\n') };
}

/** `text` without the lines that end with `marker`. */
function withoutMarked(text, marker) {
  return text
    .trimEnd()
    .split('\n')
    .filter((line) => !line.trimEnd().endsWith(marker.trim()))
    .join('\n');
}

function firstDifference(shown, expected) {
  const a = shown.trimEnd().split('\n');
  const b = expected.trimEnd().split('\n');
  const line = a.findIndex((l, i) => l !== b[i]);
  const at = line < 0 ? a.length : line;
  return `line ${at + 1} of the snippet is ${JSON.stringify(a[at] ?? '(none)')}, the file has ${JSON.stringify(b[at] ?? '(none)')}`;
}

function report(where, problem) {
  problems++;
  console.error(`${where}: ${problem}`);
}
