#!/usr/bin/env bash
# The package as its users get it: the build, packed by npm, installed from the tarball into a copy of
# examples/consumer outside the workspace (no path mappings, no hoisted node_modules), then the app's typecheck and
# its e2e tests against a real control plane. Last, the package's main entry point is loaded and its types are checked
# in a project without its optional peers (axios, @grpc/grpc-js, @nestjs/microservices) under each moduleResolution a
# Nest app may use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/k8s-auth-consumer.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$root"
step() { printf '\n[test-consumer] %s\n' "$*"; }
elapsed() { printf '[test-consumer] %s: %ss\n' "$1" "$(($(date +%s) - $2))"; }
fail() {
  printf '[test-consumer] %s\n' "$*" >&2
  exit 1
}

step "build and pack @k8s-auth/nestjs"
npx nx build k8s-auth --outputStyle=static
tarball="$work/$(npm pack ./dist/libs/k8s-auth --pack-destination "$work" --silent | tail -n 1)"
# What would be published: the licence, no source maps (they would name .ts files that are not shipped), an
# executable command; and nothing in package.json that npm publish would have to correct.
contents="$(tar tzvf "$tarball")"
grep -q ' package/LICENSE$' <<<"$contents" || fail "LICENSE is not in the tarball"
if grep -q '\.map$' <<<"$contents"; then fail "the tarball holds source maps"; fi
grep -q '^-rwxr-xr-x .* package/src/testing/cli\.js$' <<<"$contents" || fail "the command is not executable"
warnings="$(npm publish --dry-run ./dist/libs/k8s-auth 2>&1 | grep '^npm warn' | grep -v 'requires you to be logged in' || true)"
[ -z "$warnings" ] || fail "npm publish --dry-run warns: $warnings"

step "install examples/consumer from the tarball, in $work/app"
mkdir "$work/app"
tar -C examples/consumer --exclude=node_modules --exclude=dist -cf - . | tar -C "$work/app" -xf -
cd "$work/app"
start=$(date +%s)
# The tarball stands in for the registry's @k8s-auth/nestjs@^0.2.0 of the app's package.json.
npm install --no-audit --no-fund "$tarball"
elapsed install "$start"

step "typecheck (module commonjs, moduleResolution node, skipLibCheck false), unit and e2e tests"
start=$(date +%s)
npm run typecheck
# nest new's two Jest configurations: package.json's (rootDir src) and test/jest-e2e.json (rootDir test). The e2e
# tests boot the app with the test double (no credentials) and against a real control plane, check that an unguarded
# route stops start-up, and kill test runs that started a control plane to count what survives of it.
npm test
npm run test:e2e
elapsed "typecheck and tests" "$start"

step "the package without its optional peers (axios, @grpc/grpc-js, @nestjs/microservices)"
mkdir "$work/no-optional-peers"
cd "$work/no-optional-peers"
echo '{ "private": true }' >package.json
start=$(date +%s)
npm install --no-audit --no-fund --prefer-offline "$tarball" \
  @nestjs/common@^11 @nestjs/core@^11 reflect-metadata@^0.2 rxjs@^7.8 prom-client@^15 typescript@~5.9.2 @types/node@^20.19
elapsed install "$start"
for peer in axios @grpc/grpc-js @nestjs/microservices; do
  if [ -e "node_modules/$peer" ]; then fail "$peer was installed, so this check proves nothing"; fi
done
node -e "require('reflect-metadata'); require('@k8s-auth/nestjs')"
cat >index.ts <<'TS'
import { attachServiceAccountToken, fetchWithServiceAccountToken, K8sAuthModule } from '@k8s-auth/nestjs';
import { startControlPlane } from '@k8s-auth/nestjs/testing';

export { attachServiceAccountToken, fetchWithServiceAccountToken, K8sAuthModule, startControlPlane };
TS
# node16 is left out: with skipLibCheck false it reports the require() of an ES module (@kubernetes/client-node)
# that Node 20.19 allows (TS1479), as the README says.
for options in "commonjs node10" "nodenext nodenext" "node20 nodenext" "preserve bundler"; do
  set -- $options
  echo "tsc --module $1 --moduleResolution $2 --skipLibCheck false"
  npx tsc --noEmit --strict --skipLibCheck false --esModuleInterop --types node --experimentalDecorators \
    --target es2022 --module "$1" --moduleResolution "$2" index.ts
done
