#!/usr/bin/env bash
# A Nest team's first day, repeatable: a fresh `nest new` app (CLI 11) outside the workspace installs the packed
# tarball with the README's install line, gets the code of the README's "Quick start" and "Testing" sections (every
# block marked `<!-- snippet: examples/consumer/<file> … -->` there, written to <file> as the README shows it) and
# runs its e2e tests: the test double, and the guard against a real control plane (200, 403, 401). Prints the seconds
# from `npm i` to the green tests, `nest new`'s own apart. Nothing but the README is read, so a README that is not
# enough to follow fails the trial. Not part of `npm test`: it needs the npm registry and takes minutes.
#
#   bash scripts/first-day-trial.sh [path/to/k8s-auth-nestjs-x.y.z.tgz]   (default: build and pack the library)
#
# The Go binaries are expected at hand (a first build would take minutes more): in ~/.cache/k8s-auth, or wherever
# $K8S_AUTH_CACHE_DIR says. Jest starts with an empty cache, as in a new app.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
readme="$root/libs/k8s-auth/README.md"
work="$(mktemp -d "${TMPDIR:-/tmp}/k8s-auth-first-day.XXXXXX")"
# KEEP_TRIAL_APP=1 leaves the app there, e.g. to try the README's local-dev recipe in it.
if [ -n "${KEEP_TRIAL_APP:-}" ]; then trap 'echo "[first-day] left in $work"' EXIT; else trap 'rm -rf "$work"' EXIT; fi
say() { printf '\n[first-day] %s\n' "$*"; }
fail() {
  printf '[first-day] %s\n' "$*" >&2
  exit 1
}

if [ $# -gt 0 ]; then
  tarball="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
else
  say "build and pack @k8s-auth/nestjs (not timed)"
  (cd "$root" && NX_DAEMON=false NX_NO_CLOUD=true npx nx build k8s-auth --outputStyle=static)
  tarball="$work/$(cd "$root" && npm pack ./dist/libs/k8s-auth --pack-destination "$work" --silent | tail -n 1)"
fi
[ -f "$tarball" ] || fail "no tarball at $tarball"

say "nest new (CLI 11) in $work/first-day"
start=$(date +%s)
(cd "$work" && npx --yes @nestjs/cli@11 new first-day --skip-git --package-manager npm)
nest_new=$(($(date +%s) - start))
app="$work/first-day"

say "from here on, timed: the README's install line, with the tarball for @k8s-auth/nestjs"
start=$(date +%s)
# The first line of the Install section's first code block.
install="$(awk '/^## Install/{s=1} s&&/^```sh/{getline; print; exit}' "$readme")"
case "$install" in
  "npm install @k8s-auth/nestjs"*) ;;
  *) fail "the README's install line is not 'npm install @k8s-auth/nestjs …': $install" ;;
esac
# Its comment, if any, is not part of the command.
install="${install%%#*}"
(cd "$app" && ${install/@k8s-auth\/nestjs/$tarball} --no-audit --no-fund)

say "the code of the README's Quick start and Testing sections"
node - "$readme" "$app" <<'JS'
// Writes every marked code block of the two sections to the file its marker names, relative to the example's root;
// a JSON block marked with a key (`package.json jest`) is merged into that file under that key.
const { mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const [readme, app] = process.argv.slice(2);
const lines = readFileSync(readme, 'utf8').split('\n');
const MARKER = /^<!-- snippet: examples\/consumer\/(\S+)(?: (without .+|from .+|[\w-]+))? -->$/;
let section = '';
const written = [];
for (let i = 0; i < lines.length; i++) {
  if (lines[i].startsWith('## ')) section = lines[i].slice(3);
  if (section !== 'Quick start' && section !== 'Testing') continue;
  const marker = MARKER.exec(lines[i]);
  if (!marker) continue;
  const [, path, variant] = marker;
  let j = i + 1;
  while (lines[j].trim() === '') j++;
  const fence = /^(`{3,})\w*$/.exec(lines[j]);
  if (!fence) throw new Error(`README line ${i + 1}: no code block after the marker`);
  const end = lines.indexOf(fence[1], j + 1);
  if (variant?.startsWith('from ')) throw new Error(`README line ${i + 1}: ${path} is shown in part only`);
  const text = lines.slice(j + 1, end).join('\n') + '\n';
  const file = join(app, path);
  mkdirSync(dirname(file), { recursive: true });
  if (variant && !variant.startsWith('without ')) {
    const json = JSON.parse(readFileSync(file, 'utf8'));
    Object.assign(json, JSON.parse(text));
    writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  } else {
    writeFileSync(file, text);
  }
  written.push(path);
}
console.log(`written from the README: ${written.join(', ')}`);
for (const needed of ['src/app.module.ts', 'test/jest-e2e.json', 'test/auth.e2e-spec.ts']) {
  if (!written.includes(needed)) throw new Error(`the README's Quick start and Testing sections show no ${needed}`);
}
JS

say "npm run test:e2e"
(cd "$app" && npm run test:e2e -- --ci --cacheDirectory "$work/jest-cache")
elapsed=$(($(date +%s) - start))

say "not timed: tsc --noEmit over the app and its tests, under nest new's tsconfig"
(cd "$app" && npx tsc --noEmit -p tsconfig.json)

printf '\n[first-day] nest new (CLI 11, its npm install included): %ss\n' "$nest_new"
printf '[first-day] npm i of the tarball to green e2e tests, following the README: %ss (target: under 180 s)\n' "$elapsed"
[ "$elapsed" -lt 180 ] || fail "over 3 minutes"
