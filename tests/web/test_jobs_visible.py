"""The background jobs in /metrics and on the admin Jobs page (issue 10 item 6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx2

from peers.fixture import MCPServer, free_port
from tether.hub.jobs import JobReport, JobStatus, RoundCounts
from tether.web.metrics import Metrics

from .conftest import LOOPBACK, Service
from .test_admin import browser, csrf_of  # noqa: F401 - the signed-in fixture

EVERY = timedelta(minutes=5)


def test_job_series_in_the_exposition() -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    done = JobStatus(
        "health",
        EVERY,
        runs=3,
        lease_skips=1,
        last_started=started,
        last_finished=started + timedelta(seconds=2),
        last_outcome="partial",
        last=RoundCounts(ok=1, failed=2, skipped=4),
        next_run=started + EVERY,
        ok=5,
        failed=6,
        skipped=7,
    )
    idle = JobStatus("tools", timedelta(hours=1))
    text = Metrics().render(
        {},
        [JobReport(done, "host:1:abc", True), JobReport(idle, None, False)],
    )
    assert 'tether_job_runs_total{job="health"} 3' in text
    assert 'tether_job_lease_skips_total{job="health"} 1' in text
    assert 'tether_job_items_total{job="health",outcome="failed"} 6' in text
    assert 'tether_job_last_run_items{job="health",outcome="skipped"} 4' in text
    stamp = started.timestamp()
    assert (
        f'tether_job_last_run_started_timestamp_seconds{{job="health"}} {stamp:.3f}'
        in text
    )
    assert (
        f'tether_job_last_run_finished_timestamp_seconds{{job="health"}} {stamp + 2:.3f}'
        in text
    )
    assert (
        f'tether_job_next_run_timestamp_seconds{{job="health"}} {stamp + 300:.3f}'
        in text
    )
    assert 'tether_job_last_run_success{job="health"} 0' in text
    assert 'tether_job_lease_held{job="health"} 1' in text
    assert 'tether_job_lease_holder_info{holder="host:1:abc",job="health"} 1' in text
    # a job never run here: zeros, no success sample, no holder sample
    assert 'tether_job_runs_total{job="tools"} 0' in text
    assert 'tether_job_last_run_started_timestamp_seconds{job="tools"} 0' in text
    assert 'tether_job_last_run_success{job="tools"}' not in text
    assert text.count("tether_job_lease_holder_info{") == 1  # none for tools
    assert "# TYPE tether_job_runs_total counter" in text
    assert "# TYPE tether_job_lease_held gauge" in text


async def test_metrics_show_the_jobs_this_worker_ran(
    service: Service, open_mcp_server: MCPServer
) -> None:
    tether = service.tether
    await tether.servers.create(
        {
            "name": "up",
            "url": open_mcp_server.url,
            "auth_mode": "none",
            "allow_networks": LOOPBACK,
        },
        actor="admin",
    )
    await tether.servers.create(
        {
            "name": "down",
            "url": f"http://127.0.0.1:{free_port()}/mcp",
            "auth_mode": "none",
            "allow_networks": LOOPBACK,
        },
        actor="admin",
    )
    assert await tether.jobs.run_once("tools", every=timedelta(hours=1))
    async with service.anon as c:
        text = (await c.get("/metrics")).text
    assert 'tether_job_runs_total{job="tools"} 1' in text
    assert 'tether_job_last_run_items{job="tools",outcome="ok"} 1' in text
    assert 'tether_job_last_run_items{job="tools",outcome="failed"} 1' in text
    assert 'tether_job_last_run_success{job="tools"} 0' in text
    assert 'tether_job_runs_total{job="refresh"} 0' in text
    holder = tether.jobs.holder
    assert f'tether_job_lease_holder_info{{holder="{holder}",job="tools"}} 1' in text
    assert 'tether_job_lease_held{job="tools"} 1' in text
    assert 'tether_job_lease_held{job="refresh"} 0' in text


async def test_jobs_page_shows_each_job(
    service: Service,
    browser: httpx2.AsyncClient,  # noqa: F811 - the fixture
) -> None:
    tether = service.tether
    assert await tether.jobs.run_once("refresh", every=timedelta(seconds=30))
    home = await browser.get("/admin/")
    assert 'href="/admin/jobs"' in home.text  # linked from the nav
    page = await browser.get("/admin/jobs")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr id="job-([^"]+)">(.*?)</tr>', page.text, re.S))
    assert set(rows) == {"refresh", "tools", "health"}
    assert 'class="badge ok">ok<' in rows["refresh"]
    assert "0 / 0 / 0" in rows["refresh"]
    assert "(this worker)" in rows["refresh"]
    assert tether.jobs.holder in rows["refresh"]
    assert "not run here" in rows["tools"]
    assert ">free<" in rows["tools"]
    assert f'id="worker">{tether.jobs.holder}<' in page.text
    csrf_of(page.text)  # the nav's sign-out form


async def test_jobs_page_needs_a_session(service: Service) -> None:
    async with service.anon as c:
        r = await c.get("/admin/jobs")
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/login"


async def test_jobs_api_for_admins_only(service: Service) -> None:
    tether = service.tether
    assert await tether.jobs.run_once("health", every=EVERY)
    async with service.admin as c:
        r = await c.get("/api/v1/jobs")
    assert r.status_code == 200
    jobs = {j["name"]: j for j in r.json()}
    assert set(jobs) == {"refresh", "tools", "health"}
    health = jobs["health"]
    assert health["every_seconds"] == 300
    assert (health["runs"], health["last_outcome"]) == (1, "ok")
    assert health["last_counts"] == {"ok": 0, "failed": 0, "skipped": 0}
    assert (health["lease_holder"], health["held_here"]) == (tether.jobs.holder, True)
    assert health["next_run"] is not None
    assert (jobs["tools"]["lease_holder"], jobs["tools"]["runs"]) == (None, 0)
    async with service.client(service.app_key) as c:
        r = await c.get("/api/v1/jobs")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "auth.forbidden"
    async with service.anon as c:
        assert (await c.get("/api/v1/jobs")).status_code == 401
