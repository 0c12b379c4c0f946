#!/usr/bin/env bash
# The README's first command. On a fresh machine: install Tether into .venv with the pinned
# versions (constraints.txt), install Node 22 and oidc-provider for the demo's authorization
# server (.ci/install-peers.sh, npm registry only), then run the main job on SQLite with
# `tether demo --headless`: the web service, a demo MCP server (official SDK) and an
# oidc-provider authorization server with a real sign-in and consent page, all on 127.0.0.1;
# sign in to the admin pages, Connect through OAuth, list and call tools, Disconnect.
# Arguments go to `tether demo` (e.g. `bash scripts/demo.sh --keep`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/tether ] || [ ! -f .venv/.installed ] \
  || [ constraints.txt -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,web]"
  touch .venv/.installed
fi
bash .ci/install-peers.sh
.venv/bin/tether demo --headless "$@"
echo
echo "To try it yourself in a browser: .venv/bin/tether demo   (Ctrl-C stops it)"
