#!/usr/bin/env bash
# Install Tether into .venv and run the main job on its embedded default (SQLite):
# register an OAuth-protected MCP server, connect it through OAuth, use it, disconnect.
# The MCP server and the authorization server (oidc-provider) run on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/tether ] || [ constraints.txt -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
  touch .venv/.installed
fi
bash .ci/install-peers.sh >/dev/null
exec .venv/bin/python scripts/demo.py "$@"
