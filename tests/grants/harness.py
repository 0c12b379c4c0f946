"""Proof harness for grant integrity: refresh storms and SIGKILL trials in real processes.

Only the public facade is used (``Tether.open``, ``tether.servers``, ``call_tool``,
``refresh``, ``connection`` and ``tether.stores``), against the real peers of
``tests/peers`` (oidc-provider rotating refresh tokens on every use, the SDK MCP server):

* :func:`create_grant` registers a server and connects it once (a shared connection) on
  a database URL; :func:`expire_access_token` rewrites the stored ``expires_at`` into the
  past with compare-and-set, so that every process must refresh (or, with peers issuing
  short-lived access tokens, :func:`wait_real_expiry` waits until the MCP server itself
  refuses the token with 401);
* :func:`run_storm` spawns N OS processes (``grants.worker``, not a fork of an event
  loop), each opening its own Tether on the same database and firing C concurrent
  ``echo`` calls, all released together by a pipe barrier. It reports the token
  requests the AS logged during the storm, the calls ok/failed with their error codes,
  and whether the grant is alive afterwards (:func:`grant_alive`);
* :func:`kill_trials` SIGKILLs a refreshing process at random points and tells, for every
  grant lost, whether the kill fell between "token request sent" and "new tokens
  committed": the window no client can close.

``bench/refresh_storm.py`` drives the same functions from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from grants.common import GO, KEY_ENV, open_tether
from hub.conftest import as_requests, connect, introspect, mcp_status, oauth_server
from peers.fixture import AuthServer, Peers
from tether.errors import TetherError, VersionConflict
from tether.hub.tether import Tether
from tether.store.base import Connection
from tether.store.crypto import generate_key

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
WAIT_READY = 300.0  # generous bounds for a loaded 2-core machine, not synchronisation
WAIT_DONE = 900.0
SUBJECT = "shared"


# ---------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Grant:
    """A connected server on a database that several processes open.

    ``key`` seals the database's secrets; it is handed to workers by environment and
    never printed (``repr`` hides it).
    """

    database_url: str
    key: str = field(repr=False)
    server_name: str
    server_id: str
    peers: Peers
    workdir: Path

    @property
    def auth(self) -> AuthServer:
        return self.peers.auth_server


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """An empty database: a SQLite file in ``workdir`` or a private PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'tether.db'}"
    elif backend == "postgres":
        from store.conftest import postgres_schema

        async with postgres_schema() as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}")


@contextlib.asynccontextmanager
async def tether_on(
    grant: Grant, open_kwargs: dict[str, Any] | None = None
) -> AsyncIterator[Tether]:
    """A Tether of this (parent) process on the grant's database."""
    tether = await open_tether(grant.database_url, grant.key, open_kwargs)
    try:
        yield tether
    finally:
        await tether.aclose()


async def create_grant(
    peers: Peers,
    database_url: str,
    workdir: Path,
    *,
    name: str = "storm",
    key: str | None = None,
) -> Grant:
    """Register a shared OAuth server for ``peers`` and connect it once."""
    key = key or generate_key()
    tether = await open_tether(database_url, key)
    try:
        server = await tether.servers.create(
            oauth_server(peers, name=name), actor="admin"
        )
        await connect(tether, server.name)
    finally:
        await tether.aclose()
    return Grant(database_url, key, server.name, server.id, peers, workdir)


async def stored(tether: Tether, server_id: str) -> Connection:
    """The stored connection (tokens decrypted)."""
    conn = await tether.stores.connections.get(server_id, SUBJECT)
    if conn is None:
        raise AssertionError(f"no stored connection for {server_id}")
    return conn


async def expire_access_token(grant: Grant) -> Connection:
    """Move the stored ``expires_at`` an hour into the past (compare-and-set, retried).

    Every Tether now considers the access token due and must refresh before its first
    call. The token itself stays valid at the MCP server (``expiry="local"``); see
    :func:`wait_real_expiry` for a token the MCP server refuses.
    """
    async with tether_on(grant) as tether:
        for _ in range(5):
            conn = await stored(tether, grant.server_id)
            past = datetime.now(UTC) - timedelta(hours=1)
            try:
                return await tether.stores.connections.save(
                    conn.replace(expires_at=past), expected_version=conn.version
                )
            except VersionConflict:
                continue
    raise AssertionError("could not expire the access token: the record kept changing")


async def wait_real_expiry(grant: Grant) -> None:
    """Wait until the stored access token has really expired: the MCP server says 401.

    Needs peers whose AS issues short-lived access tokens (``AS_ACCESS_TOKEN_TTL``);
    oidc-provider cannot revoke one access token without its whole grant (revocation
    drops every token of the grant), so waiting is the only way to a dead access token
    beside a live refresh token. The wait is the fault being set up, bounded, and ends
    on the MCP server's answer, not on the clock.
    """
    async with tether_on(grant) as tether:
        conn = await stored(tether, grant.server_id)
    assert conn.access_token is not None
    assert conn.expires_at is not None
    remaining = (conn.expires_at - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(0.0, remaining))
    token = conn.access_token.get_secret_value()
    for _ in range(120):
        if mcp_status(grant.peers.mcp, token) == 401:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the access token is still accepted a minute after expiry")


# ---------------------------------------------------------------- worker processes


class Worker:
    """One ``grants.worker`` OS process, with JSON lines on stdout and a stdin barrier."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr

    @classmethod
    async def spawn(cls, grant: Grant, mode: str, index: int, **config: Any) -> Worker:
        """Start ``python -m grants.worker MODE CONFIG`` (the key goes by environment)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env[KEY_ENV] = grant.key
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        payload = {
            "database_url": grant.database_url,
            "server": grant.server_name,
            **config,
        }
        stderr = grant.workdir / f"{mode}-{index}-{time.monotonic_ns()}.err"
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "grants.worker",
                mode,
                json.dumps(payload),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=str(REPO),
            )
        return cls(proc, stderr)

    async def line(self, bound: float) -> dict[str, Any]:
        """The next JSON line (raises with the stderr tail if the process ended)."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), bound)
        if not raw:
            await self.proc.wait()
            raise RuntimeError(
                f"worker {self.proc.pid} exited {self.proc.returncode}:\n{self.tail()}"
            )
        data: dict[str, Any] = json.loads(raw)
        return data

    async def ready(self) -> None:
        event = await self.line(WAIT_READY)
        if event["event"] != "ready":
            raise RuntimeError(f"worker {self.proc.pid} said {event} before ready")

    def go(self) -> None:
        """Release the barrier (the worker reads one line)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{GO}\n".encode())

    async def done(self) -> dict[str, Any]:
        event = await self.line(WAIT_DONE)
        await asyncio.wait_for(self.proc.wait(), WAIT_READY)
        if event["event"] != "done" or self.proc.returncode != 0:
            raise RuntimeError(f"worker {self.proc.pid}: {event}\n{self.tail()}")
        return event

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        text = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def release_together(workers: list[Worker]) -> None:
    """Wait until every worker opened its Tether, then release them all at once."""
    await ready_all(workers)
    await release(workers)


async def ready_all(workers: list[Worker]) -> None:
    """Wait until every worker is ready (killing them all if one fails)."""
    try:
        await asyncio.gather(*(worker.ready() for worker in workers))
    except BaseException:
        for worker in workers:
            worker.kill()
        raise


async def release(workers: list[Worker]) -> None:
    """Write ``go`` to every worker's stdin: the barrier opens for all at once."""
    for worker in workers:
        worker.go()
    for worker in workers:
        assert worker.proc.stdin is not None
        await worker.proc.stdin.drain()


# ---------------------------------------------------------------- the AS side


@dataclass(frozen=True)
class TokenPosts:
    """Token requests the AS logged in a window: all, answered 200, refused."""

    total: int
    ok: int
    refused: int

    @classmethod
    def since(cls, auth: AuthServer, mark: int) -> TokenPosts:
        lines = token_lines(auth)[mark:]
        ok = sum(1 for line in lines if "-> 200 " in line)
        return cls(len(lines), ok, len(lines) - ok)


def token_lines(auth: AuthServer) -> list[str]:
    """Every ``POST /token`` the AS logged (``AS_LOG=1``), in order.

    The log line is written before the response goes out, so once a client has its
    answer the line is there. During a storm only refresh_token grants are sent (no
    connect runs), so every line in that window is a refresh.
    """
    return as_requests(auth, "POST", "/token")


# ---------------------------------------------------------------- the storm


@dataclass(frozen=True)
class Alive:
    """Is the grant alive? Stored status, the AS's view, a fresh process's view."""

    status: str
    refresh_token_active: bool
    fresh_refresh: str
    fresh_call: str

    @property
    def alive(self) -> bool:
        return self.fresh_refresh == "ok" and self.fresh_call == "ok"


async def grant_alive(grant: Grant, open_kwargs: dict[str, Any] | None = None) -> Alive:
    """Introspect the stored refresh token, then let a fresh process refresh and call."""
    async with tether_on(grant, open_kwargs) as tether:
        conn = await stored(tether, grant.server_id)
    active = conn.refresh_token is not None and bool(
        introspect(grant.auth, conn.refresh_token.get_secret_value())["active"]
    )
    worker = await Worker.spawn(grant, "check", 0, open_kwargs=open_kwargs)
    await release_together([worker])
    event = await worker.done()
    return Alive(conn.status, active, event["refresh"], event["call"])


@dataclass(frozen=True)
class StormReport:
    """One storm: N processes x C calls on one expired connection."""

    procs: int
    calls: int
    ok: int
    failed: int
    errors: dict[str, int]
    samples: list[str]
    token_posts: TokenPosts
    alive: Alive
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "procs": self.procs,
            "calls": self.calls,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "samples": self.samples,
            "refreshes_at_as": self.token_posts.total,
            "refreshes_ok": self.token_posts.ok,
            "refreshes_refused": self.token_posts.refused,
            "status_after": self.alive.status,
            "refresh_token_active": self.alive.refresh_token_active,
            "fresh_refresh": self.alive.fresh_refresh,
            "fresh_call": self.alive.fresh_call,
            "grant_alive": self.alive.alive,
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        return (
            f"{self.procs} procs, {self.calls} calls: refreshes at AS {self.token_posts.total} "
            f"({self.token_posts.ok} ok, {self.token_posts.refused} refused), "
            f"calls ok {self.ok} failed {self.failed} {self.errors or ''}, "
            f"grant alive {self.alive.alive} (status {self.alive.status}, "
            f"RT active {self.alive.refresh_token_active}, fresh process refresh "
            f"{self.alive.fresh_refresh} call {self.alive.fresh_call}), "
            f"{self.seconds:.1f} s"
            + "".join(f"\n  e.g. {sample}" for sample in self.samples[:3])
        )


async def run_storm(
    grant: Grant,
    *,
    procs: int,
    calls: int,
    open_kwargs: dict[str, Any] | None = None,
    expiry: str = "local",
    warm: bool = False,
) -> StormReport:
    """Expire the access token, then fire ``procs`` x ``calls`` concurrent tool calls.

    ``expiry`` is ``local`` (rewrite ``expires_at``; the MCP server still accepts the
    old token) or ``real`` (wait until the MCP server refuses it; needs short-lived
    access tokens, see :func:`wait_real_expiry`). With ``warm`` the workers open their
    MCP sessions (``list_tools``) while the token is still good, and the token expires
    while they idle, as it does under a running app; otherwise it expires before they
    start.
    """
    workers = []
    if warm:
        workers = await _spawn_storm(grant, procs, calls, open_kwargs, warm=True)
        await ready_all(workers)
    if expiry == "real":
        await wait_real_expiry(grant)
    else:
        await expire_access_token(grant)
    mark = len(token_lines(grant.auth))
    if not warm:
        workers = await _spawn_storm(grant, procs, calls, open_kwargs, warm=False)
        await ready_all(workers)
    await release(workers)
    started = time.monotonic()
    events = await asyncio.gather(*(worker.done() for worker in workers))
    seconds = time.monotonic() - started
    posts = TokenPosts.since(grant.auth, mark)
    errors: Counter[str] = Counter()
    for event in events:
        errors.update(event["errors"])
    alive = await grant_alive(grant, open_kwargs)
    return StormReport(
        procs=procs,
        calls=procs * calls,
        ok=sum(event["ok"] for event in events),
        failed=sum(event["failed"] for event in events),
        errors=dict(errors),
        samples=_distinct(s for event in events for s in event["samples"]),
        token_posts=posts,
        alive=alive,
        seconds=round(seconds, 2),
    )


def _distinct(samples: Iterable[str], limit: int = 5) -> list[str]:
    """Up to ``limit`` samples, the first of each error code before any repeat."""
    first: dict[str, str] = {}
    repeats: list[str] = []
    for sample in samples:
        code = sample.partition(":")[0]
        if code in first:
            repeats.append(sample)
        else:
            first[code] = sample
    return [*first.values(), *repeats][:limit]


async def _spawn_storm(
    grant: Grant,
    procs: int,
    calls: int,
    open_kwargs: dict[str, Any] | None,
    *,
    warm: bool,
) -> list[Worker]:
    return [
        await Worker.spawn(
            grant, "storm", i, calls=calls, open_kwargs=open_kwargs, warm=warm
        )
        for i in range(procs)
    ]


# ---------------------------------------------------------------- SIGKILL trials

PHASES = (
    "before start",
    "before token POST",
    "POST sent, no answer",
    "answer, not journaled",
    "journaled, not committed",
    "after commit",
)
WINDOW = frozenset(PHASES[2:4])
"""Token POST sent .. the answer in the journal (DUR-1): the window no client can close.
Before the journal it reached to the commit; a journaled answer is replayed."""


@dataclass(frozen=True)
class Marks:
    """What the refreshing child recorded before it died (monotonic ns)."""

    start: int | None
    post: int | None
    response: int | None
    journal: int | None
    commit: int | None

    @classmethod
    def read(cls, path: Path) -> Marks:
        found: dict[str, int] = {}
        seen_response = False
        for line in path.read_text().splitlines() if path.exists() else []:
            name, _, stamp = line.rpartition(" ")
            if not name or not stamp.isdigit():
                continue  # a write cut by the kill
            if name == "response":
                seen_response = True
            if name.startswith("store:") and name.endswith(":end"):
                if seen_response and "commit" not in found:
                    found["commit"] = int(stamp)
                continue
            found.setdefault(name, int(stamp))
        return cls(
            found.get("start"),
            found.get("post"),
            found.get("response"),
            found.get("journal"),
            found.get("commit"),
        )

    @property
    def phase(self) -> str:
        if self.commit is not None:
            return PHASES[5]
        if self.journal is not None:
            return PHASES[4]
        if self.response is not None:
            return PHASES[3]
        if self.post is not None:
            return PHASES[2]
        return PHASES[1] if self.start is not None else PHASES[0]


@dataclass(frozen=True)
class Trial:
    """One kill: when, in which phase, and whether the grant survived."""

    index: int
    delay_ms: float
    phase: str
    refresh_token_active: bool
    lost: bool
    replayed: bool = False
    """The next process stored the answer from the journal (DUR-2)."""

    @property
    def in_window(self) -> bool:
        return self.phase in WINDOW


@dataclass
class KillReport:
    """Every trial plus the refresh timings measured without a kill."""

    trials: list[Trial]
    timings: list[dict[str, float]]
    delay_range_ms: tuple[float, float]
    final: Alive | None = None

    @property
    def lost(self) -> list[Trial]:
        return [trial for trial in self.trials if trial.lost]

    def table(self) -> str:
        """The kill -9 table: trials and losses per phase, then the measured window."""
        rows = [
            "| kill fell in phase | trials | grants lost | saved by the journal |",
            "|---|---|---|---|",
        ]
        for phase in PHASES:
            of_phase = [trial for trial in self.trials if trial.phase == phase]
            mark = " (window)" if phase in WINDOW else ""
            rows.append(
                f"| {phase}{mark} | {len(of_phase)} | "
                f"{sum(trial.lost for trial in of_phase)} | "
                f"{sum(trial.replayed for trial in of_phase)} |"
            )
        rows.append(
            f"| **total** | {len(self.trials)} | {len(self.lost)} "
            f"({sum(t.in_window for t in self.lost)} in the window) | "
            f"{sum(t.replayed for t in self.trials)} |"
        )
        lines = ["\n".join(rows)]
        if self.timings:
            lines.append(
                "refresh timings without a kill (ms, median / max over "
                f"{len(self.timings)} runs): "
                + ", ".join(
                    f"{name} {statistics.median(t[name] for t in self.timings):.1f} / "
                    f"{max(t[name] for t in self.timings):.1f}"
                    for name in self.timings[0]
                )
            )
        lines.append(
            f"kill delays drawn uniformly from {self.delay_range_ms[0]:.1f}-"
            f"{self.delay_range_ms[1]:.1f} ms after the barrier"
        )
        for trial in self.lost:
            lines.append(
                f"lost in trial {trial.index}: kill at {trial.delay_ms:.1f} ms, "
                f"{trial.phase}, in the window: {trial.in_window}"
            )
        return "\n".join(lines)


def _timing(marks: Marks, released: int) -> dict[str, float]:
    def ms(a: int | None, b: int | None) -> float:
        if a is None or b is None:
            raise AssertionError(f"an unkilled refresh left incomplete marks: {marks}")
        return (b - a) / 1e6

    timing = {
        "barrier->POST": ms(released, marks.post),
        "POST->answer": ms(marks.post, marks.response),
    }
    if marks.journal is not None:
        timing["answer->journal"] = ms(marks.response, marks.journal)
    return {
        **timing,
        "answer->commit": ms(marks.response, marks.commit),
        "barrier->commit": ms(released, marks.commit),
    }


async def _marked_refresh(
    grant: Grant,
    index: int,
    delay: float | None,
    open_kwargs: dict[str, Any] | None = None,
) -> tuple[Marks, int, float]:
    """Run one marked refresh; SIGKILL it ``delay`` s after the barrier if given."""
    marks_path = grant.workdir / f"marks-{index}"
    marks_path.unlink(missing_ok=True)
    worker = await Worker.spawn(
        grant, "refresh", index, marks=str(marks_path), open_kwargs=open_kwargs
    )
    await release_together([worker])
    released = time.monotonic_ns()
    kill_ms = 0.0
    if delay is None:
        event = await worker.done()
        if event["refresh"] != "ok":
            raise AssertionError(f"an unkilled refresh failed: {event}")
    else:
        await asyncio.sleep(delay)  # the fault's timing, not synchronisation
        kill_ms = (time.monotonic_ns() - released) / 1e6
        worker.kill()
        await asyncio.wait_for(worker.proc.wait(), WAIT_READY)
    return Marks.read(marks_path), released, kill_ms


async def _survived(grant: Grant, tether: Tether) -> tuple[bool, bool, bool]:
    """(refresh token active at the AS, grant alive, replayed from the journal).

    First does what the next start does: replay the journal (DUR-2). Reconnects a
    lost grant.
    """
    replays = tether.connections.recovery.replayed
    before = len(replays)
    await tether.replay_journal()
    replayed = any(item.outcome == "applied" for item in replays[before:])
    active, alive = await _alive_or_reconnected(grant, tether)
    return active, alive, replayed


async def _alive_or_reconnected(grant: Grant, tether: Tether) -> tuple[bool, bool]:
    conn = await stored(tether, grant.server_id)
    active = conn.refresh_token is not None and bool(
        introspect(grant.auth, conn.refresh_token.get_secret_value())["active"]
    )
    if active and conn.status == "connected":
        return active, True
    try:  # the AS's word is final; a refresh confirms the loss
        alive = (await tether.refresh(grant.server_name)).status == "connected"
    except TetherError:
        alive = False
    if not alive:
        await connect(tether, grant.server_name)  # the next trial needs a live grant
    return active, alive


async def kill_trials(
    grant: Grant,
    *,
    trials: int,
    seed: int,
    calibration: int = 3,
    open_kwargs: dict[str, Any] | None = None,
) -> KillReport:
    """SIGKILL a refreshing process at random points; classify every lost grant.

    ``calibration`` unkilled refreshes measure the refresh duration; each trial's kill
    delay is then drawn (seeded) uniformly from zero to 1.2 x the slowest of them, so
    kills land before, during and after the token round trip and the commit. Survival
    is judged by introspecting the stored refresh token at the AS; a grant whose token
    is dead is confirmed by a refresh and then connected again for the next trial.
    ``open_kwargs`` go to every ``Tether.open`` (the children's and the parent's).
    """
    rng = random.Random(seed)
    timings = []
    for index in range(calibration):
        marks, released, _ = await _marked_refresh(grant, -1 - index, None, open_kwargs)
        timings.append(_timing(marks, released))
    high = 1.2 * max(t["barrier->commit"] for t in timings)
    report = KillReport([], timings, (0.0, high))
    async with tether_on(grant, open_kwargs) as tether:
        for index in range(trials):
            delay_ms = rng.uniform(0.0, high)
            marks, _, kill_ms = await _marked_refresh(
                grant, index, delay_ms / 1e3, open_kwargs
            )
            active, alive, replayed = await _survived(grant, tether)
            report.trials.append(
                Trial(index, kill_ms, marks.phase, active, not alive, replayed)
            )
    report.final = await grant_alive(grant, open_kwargs)
    return report


def format_storms(columns: Mapping[str, list[StormReport]]) -> str:
    """A side-by-side table: one row per round, one column group per variant."""
    names = list(columns)
    head = "| round | " + " | ".join(
        f"{n}: refreshes at AS | {n}: failed calls | {n}: grant alive" for n in names
    )
    rows = [head + " |", "|---" * (1 + 3 * len(names)) + "|"]
    rounds = max(len(reports) for reports in columns.values())
    for i in range(rounds):
        cells = []
        for name in names:
            reports = columns[name]
            if i < len(reports):
                r = reports[i]
                cells += [
                    str(r.token_posts.total),
                    f"{r.failed}/{r.calls}",
                    "yes" if r.alive.alive else "no",
                ]
            else:
                cells += ["", "", ""]
        rows.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def iter_errors(reports: list[StormReport]) -> Iterator[str]:
    """The failure codes over several storms, most common first."""
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.errors)
    for code, count in total.most_common():
        yield f"{code} x{count}"
