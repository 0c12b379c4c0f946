#!/usr/bin/env bash
# Install what the MCP conformance suite needs, idempotently and safe to run
# concurrently with .ci/install-peers.sh (same flock, same Node 22 layout):
#   * Node 22 (the suite's engines field wants >= 22; the machines ship Node 20)
#     from the npm package node-linux-<arch>@22.23.3 into $PEERS/node22, reused
#     when already there;
#   * @modelcontextprotocol/conformance at every version pinned under
#     conformance/versions/<version>/ (package.json + package-lock.json, `npm ci`),
#     each into its own folder $PEERS/conformance-<version>.
# $PEERS is ${TETHER_PEERS_HOME:-$HOME/.cache/tether-peers}. Only the npm registry
# is contacted (through npm itself).
#
# Usage: conformance/install.sh [VERSION...]   (default: every version under conformance/versions/)
# Prints the Node binary path on stdout at the end; progress goes to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
NPM_FLAGS=(--no-audit --no-fund --loglevel=error --no-update-notifier)

log() { printf '[conformance/install] %s\n' "$*" >&2; }

command -v npm >/dev/null || { log "npm is required (any version) to fetch packages"; exit 1; }
mkdir -p "$PEERS"
exec 9>"$PEERS/.install.lock"
flock 9

# --- Node 22 ---------------------------------------------------------------
if NODE_BIN="$(find_node22)"; then
  log "reusing $NODE_BIN ($("$NODE_BIN" --version))"
else
  pkg="$(node_pkg)" || { log "no bundled Node for $(uname -m)"; exit 1; }
  N22="$PEERS/node22"
  log "installing $pkg@$NODE22_VERSION into $N22"
  tmp="$(mktemp -d "$PEERS/node22.tmp.XXXXXX")"
  if ! (cd "$tmp" && npm install "${NPM_FLAGS[@]}" --prefix "$tmp" "$pkg@$NODE22_VERSION" >"$tmp/npm.log" 2>&1); then
    tail -n 30 "$tmp/npm.log" >&2; rm -rf "$tmp"; log "could not install $pkg@$NODE22_VERSION"; exit 1
  fi
  rm -rf "$N22" && mv "$tmp" "$N22"
  NODE_BIN="$(find_node22)" || { log "installed Node 22 does not run"; exit 1; }
  log "installed $("$NODE_BIN" --version) at $NODE_BIN"
fi

# --- conformance suite(s) ----------------------------------------------------
if [ $# -gt 0 ]; then
  versions=("$@")
else
  mapfile -t versions < <(ls -1 "$HERE/versions")
fi

for v in "${versions[@]}"; do
  src="$HERE/versions/$v"
  dest="$PEERS/conformance-$v"
  [ -f "$src/package.json" ] && [ -f "$src/package-lock.json" ] \
    || { log "no pinned package.json + package-lock.json in $src"; exit 1; }
  if cmp -s "$src/package-lock.json" "$dest/package-lock.json" \
     && [ -f "$dest/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]; then
    log "reusing $dest"
    continue
  fi
  log "installing @modelcontextprotocol/conformance@$v into $dest"
  tmp="$(mktemp -d "$PEERS/conformance.tmp.XXXXXX")"
  cp "$src/package.json" "$src/package-lock.json" "$tmp/"
  # npm runs under Node 22 so the package's engines constraint is met.
  if ! (cd "$tmp" && PATH="$(dirname "$NODE_BIN"):$PATH" npm ci "${NPM_FLAGS[@]}" >"$tmp/npm.log" 2>&1); then
    tail -n 30 "$tmp/npm.log" >&2; rm -rf "$tmp"; log "npm ci failed for $v"; exit 1
  fi
  got="$("$NODE_BIN" -p 'require(process.argv[1]).version' "$tmp/node_modules/@modelcontextprotocol/conformance/package.json")"
  [ "$got" = "$v" ] || { rm -rf "$tmp"; log "expected $v, npm installed $got"; exit 1; }
  rm -rf "$dest" && mv "$tmp" "$dest"
  log "installed conformance $got"
done

echo "$NODE_BIN"
