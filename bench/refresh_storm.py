"""Benchmark: a refresh storm with the cross-process refresh lease on and off.

Not a test. Run from the repository root::

    .venv/bin/python bench/refresh_storm.py --backend sqlite --procs 4 --calls 250 \
        --rounds 3 --lease both

Each round starts from a new database (a SQLite file, or a private PostgreSQL schema on
127.0.0.1:5432), registers a shared OAuth server at the loopback oidc-provider (refresh
tokens rotate on every use) and connects it once. The stored access token is then moved
into the past (``--expiry local``; the MCP server still accepts the old token), or the
AS issues access tokens living ``--ttl`` seconds and the round waits until the MCP server
answers 401 to the old one (``--expiry real``, as after a real expiry). Then ``--procs``
OS processes, each with its own ``Tether`` on that database, fire ``--calls`` concurrent
``echo`` tool calls, released together by a pipe barrier (``tests/grants/harness.py``). Per round it prints the refresh requests the AS
logged, the failed calls (with their error codes), and whether the grant is alive
afterwards (the stored refresh token introspected at the AS, then a fresh process
refreshing and calling), and at the end a side-by-side table of the variants.

``--lease on|off`` passes ``refresh_lease=True|False`` to ``Tether.open`` (off = the
naive path: no cross-process lease, no in-process single flight). Code without that
keyword runs as it is, once per round, and says so. Results also go to
``bench/results/refresh_storm-<backend>-<expiry>-<UTC date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from grants.conftest import AS_ENV, MCP_ENV  # noqa: E402
from grants.harness import (  # noqa: E402
    StormReport,
    create_grant,
    database,
    format_storms,
    iter_errors,
    run_storm,
)
from peers.fixture import Peers, ensure_node  # noqa: E402
from tether.hub.tether import Tether  # noqa: E402

SWITCH = "refresh_lease"


def variants(lease: str) -> dict[str, dict[str, Any]]:
    """Column name -> ``Tether.open`` keywords, as far as the running code allows."""
    if SWITCH not in inspect.signature(Tether.open).parameters:
        print(
            f"note: this code's Tether.open has no {SWITCH!r} keyword; "
            "running it as it is (column 'as-is')"
        )
        return {"as-is": {}}
    chosen = ["on", "off"] if lease == "both" else [lease]
    return {name: {SWITCH: name == "on"} for name in chosen}


async def one_round(
    peers: Peers,
    backend: str,
    name: str,
    index: int,
    args: argparse.Namespace,
    open_kwargs: dict[str, Any],
) -> StormReport:
    with tempfile.TemporaryDirectory(prefix="tether-storm-") as tmp:
        workdir = Path(tmp)
        async with database(backend, workdir) as url:
            grant = await create_grant(peers, url, workdir, name=f"storm-{index}")
            report = await run_storm(
                grant,
                procs=args.procs,
                calls=args.calls,
                open_kwargs=open_kwargs,
                expiry=args.expiry,
                warm=args.warm,
            )
    print(f"[{backend} lease {name}] round {index}: {report.summary()}", flush=True)
    return report


async def main(args: argparse.Namespace) -> None:
    columns = variants(args.lease)
    reports: dict[str, list[StormReport]] = {name: [] for name in columns}
    as_env = dict(AS_ENV)
    if args.expiry == "real":
        as_env["AS_ACCESS_TOKEN_TTL"] = args.ttl
    with Peers(node=ensure_node(), as_env=as_env, mcp_env=MCP_ENV) as peers:
        for index in range(1, args.rounds + 1):
            for name, open_kwargs in columns.items():  # interleaved: same machine noise
                reports[name].append(
                    await one_round(peers, args.backend, name, index, args, open_kwargs)
                )
    print(
        f"\n{args.backend}: {args.procs} processes x {args.calls} calls on one expired "
        f"connection ({args.expiry} expiry{', warm' if args.warm else ''}), "
        "oidc-provider rotating refresh tokens, "
        f"{args.rounds} round(s)\n"
    )
    print(format_storms(reports))
    for name, runs in reports.items():
        print(f"errors with lease {name}: {', '.join(iter_errors(runs)) or 'none'}")
    out = (
        ROOT
        / "bench"
        / "results"
        / (
            f"refresh_storm-{args.backend}-{args.expiry}{'-warm' if args.warm else ''}"
            f"-{datetime.now(UTC):%Y-%m-%d}.json"
        )
    )
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "python": platform.python_version(),
                "machine": platform.machine(),
                "rounds": {
                    n: [r.to_dict() for r in runs] for n, runs in reports.items()
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {out.relative_to(ROOT)}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", choices=["on", "off", "both"], default="both")
    parser.add_argument(
        "--expiry",
        choices=["local", "real"],
        default="local",
        help="local: rewrite the stored expires_at (the MCP server still accepts the "
        "old token); real: short-lived access tokens (--ttl), wait until the MCP "
        "server answers 401 to the old one",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="workers open their MCP sessions before the token expires (a running "
        "app); best with --expiry real (a local expiry is noticed only once the "
        "in-memory token is re-read)",
    )
    parser.add_argument(
        "--ttl",
        type=int,
        default=120,
        help="access-token lifetime at the AS with --expiry real (s); a storm must end "
        "within half of it, or the new token is due again",
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
