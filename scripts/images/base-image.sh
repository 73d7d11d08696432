#!/usr/bin/env bash
# The base images for the Dockerfile, as build arguments, one per line:
#   BASE_IMAGE=<image>    the runtime stage's base
#   BUILD_IMAGE=<image>   the build stage's base (only when it differs from BASE_IMAGE)
# It is node:20-bookworm-slim when that image is present or can be pulled. Otherwise (no registry reachable)
# a stand-in is made once from Debian packages (debootstrap) plus this machine's Node and npm, and kept as a
# local tag. The build stage's stand-in also trusts this machine's CA bundle (NODE_EXTRA_CA_CERTS), for
# `npm ci` behind TLS inspection; the runtime stage's does not, so the bundle never reaches an app image.
# Progress goes to stderr. Needs root to make a stand-in (debootstrap, chroot).
#   DOCKER         the docker client (default: /usr/bin/docker if present, else docker)
#   PULL_TIMEOUT   seconds a pull may take (default 120)
#   DEBIAN_MIRROR  where debootstrap fetches from (default http://deb.debian.org/debian)
set -euo pipefail

DEFAULT_IMAGE=node:20-bookworm-slim
NODE_MAJOR=20
DOCKER=${DOCKER:-$([ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)}
PULL_TIMEOUT=${PULL_TIMEOUT:-120}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "[base-image] $*" >&2; }

if "$DOCKER" image inspect "$DEFAULT_IMAGE" >/dev/null 2>&1 ||
  timeout "$PULL_TIMEOUT" "$DOCKER" pull --quiet "$DEFAULT_IMAGE" >&2; then
  echo "BASE_IMAGE=$DEFAULT_IMAGE"
  exit 0
fi
log "cannot pull $DEFAULT_IMAGE: using a stand-in made from Debian packages and this machine's Node"

node_bin=$(readlink -f "$(command -v node)")
node_version=$("$node_bin" -p 'process.versions.node')
if [ "${node_version%%.*}" != "$NODE_MAJOR" ]; then
  log "this machine's Node is $node_version; the stand-in for $DEFAULT_IMAGE needs Node $NODE_MAJOR"
  exit 1
fi
npm_dir=$(npm root -g)/npm
ca_file=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
# A new tag whenever this recipe, Node, npm or the CA bundle changes; the same tag (kept) otherwise.
recipe=$(cat "$0" "$node_bin" "$npm_dir/package.json" | sha256sum | cut -c1-12)
runtime_tag=k8s-auth/node-stand-in:$node_version-bookworm-slim-$recipe
ca_hash=$( (cat "$ca_file" 2>/dev/null || true) | sha256sum | cut -c1-12)
build_tag=$runtime_tag-build-$ca_hash

if ! "$DOCKER" image inspect "$runtime_tag" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || {
    log "making the stand-in needs root (debootstrap)"
    exit 1
  }
  command -v debootstrap >/dev/null || {
    log "debootstrap is missing: apt-get install -y debootstrap"
    exit 1
  }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (a few minutes, once)"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >&2
  # As in the official image: Node and npm under /usr/local, user and group `node` with id 1000.
  install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  chroot "$root" groupadd --gid 1000 node
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$root" node --version >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" --numeric-owner -c . | "$DOCKER" import \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    - "$runtime_tag" >&2
  rm -rf "$root"
  trap - EXIT
  log "made $runtime_tag"
fi

if [ ! -f "$ca_file" ]; then
  echo "BASE_IMAGE=$runtime_tag"
  exit 0
fi
if ! "$DOCKER" image inspect "$build_tag" >/dev/null 2>&1; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  cp "$ca_file" "$context/ca-certificates.crt"
  printf '%s\n' "FROM $runtime_tag" \
    'COPY ca-certificates.crt /usr/local/share/build-ca-certificates.crt' \
    'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/build-ca-certificates.crt' >"$context/Dockerfile"
  DOCKER_BUILDKIT=0 "$DOCKER" build --quiet -t "$build_tag" "$context" >&2
  log "made $build_tag"
fi
echo "BASE_IMAGE=$runtime_tag"
echo "BUILD_IMAGE=$build_tag"
