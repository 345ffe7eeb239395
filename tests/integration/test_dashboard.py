"""The dashboard's HTTP surface on a real database: the JSON API as the contract gives
it, errors as one line, and the security rules (escaping, token, CSRF, read-only)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("starlette")

with warnings.catch_warnings():  # Starlette suggests httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import durable
from durable.dashboard import asgi

from .waiting import wait_for

EVIL = "<script>alert('pwned')</script>"


@pytest.fixture
def shop(app: durable.App, worker: Any) -> Iterator[dict[str, Any]]:
    @app.step()
    def label(order: str) -> str:
        return EVIL

    @app.workflow(name="order")
    def order(ctx: durable.Context, order_id: str) -> Any:
        ctx.set_status(EVIL)
        shipped = yield label(order_id)
        approved = yield ctx.wait_signal("approve")
        return {"shipped": shipped, "approved": approved}

    @app.workflow(name="other")
    def other(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("never")

    with worker(app):
        waiting = app.start(order, "o-1")
        wait_for(lambda: app.get_run(waiting.run_id).status == "waiting", what="o-1 waiting")
        yield {"waiting": waiting, "order": order}


def client(app: durable.App, **options: Any) -> TestClient:
    return TestClient(asgi(app, **options), base_url="http://127.0.0.1:8000")


def test_the_json_api_lists_reads_and_acts(app: durable.App, shop: dict[str, Any]) -> None:
    run_id = shop["waiting"].run_id
    with client(app) as http:
        listed = http.get("/api/runs", params={"status": "waiting"}).json()
        assert listed["total"] == 1 and listed["runs"][0]["run_id"] == run_id
        assert http.get(f"/api/runs/{run_id}").json()["custom_status"] == EVIL
        events = http.get(f"/api/runs/{run_id}/events").json()
        assert [e["type"] for e in events][:2] == ["run_started", "status_set"]
        assert http.get("/api/stats").json()["by_status"] == {"waiting": 1}
        for path in ("/api/workers", "/api/queues", "/api/schedules"):
            assert isinstance(http.get(path).json(), list)
        sent = http.post(f"/api/runs/{run_id}/signal", json={"name": "approve", "payload": 1})
        assert sent.status_code == 200, sent.text
        assert shop["waiting"].result(timeout=30) == {"shipped": EVIL, "approved": 1}
        # errors: one line each, with the status the contract names
        missing = http.get("/api/runs/no-such-run")
        assert missing.status_code == 404 and "no-such-run" in missing.json()["error"]
        refused = http.post(f"/api/runs/{run_id}/resume")
        assert refused.status_code == 409 and "\n" not in refused.json()["error"]
        bad = http.post(f"/api/runs/{run_id}/signal", content=b"{not json")
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]
        no_name = http.post(f"/api/runs/{run_id}/signal", json={"payload": 1})
        assert no_name.status_code == 400


def test_every_value_from_a_run_is_escaped(app: durable.App, shop: dict[str, Any]) -> None:
    run_id = shop["waiting"].run_id
    with client(app) as http:
        for path in ("/runs", f"/runs/{run_id}"):
            html = http.get(path).text
            assert EVIL not in html
            assert "&lt;script&gt;" in html


def test_a_token_guards_every_request(app: durable.App, shop: dict[str, Any]) -> None:
    run_id = shop["waiting"].run_id
    with client(app, token="s3cret") as http:
        assert http.get("/api/runs").status_code == 401
        assert http.get("/api/runs").json() == {
            "error": "authentication required: give the dashboard token"
        }
        wrong = http.get("/api/runs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        page = http.get("/runs", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        good = http.get("/api/runs", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200 and good.json()["total"] == 1
        # an API client with the token needs no CSRF token
        acted = http.post(
            f"/api/runs/{run_id}/pause",
            headers={"Authorization": "Bearer s3cret", "Origin": "http://elsewhere.example"},
        )
        assert acted.status_code == 200
        # the login page: a wrong token is refused, the right one sets a session
        login = http.get("/login")
        csrf = http.cookies["durable_csrf"]
        assert "dashboard token" in login.text
        refused = http.post("/login", data={"token": "nope", "csrf": csrf, "next": "/runs"})
        assert refused.status_code == 401
        ok = http.post(
            "/login",
            data={"token": "s3cret", "csrf": csrf, "next": "/runs"},
            follow_redirects=False,
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/runs"
        assert http.get("/runs").status_code == 200  # the session cookie now


def test_a_cross_site_post_without_the_csrf_token_is_refused(
    app: durable.App, shop: dict[str, Any]
) -> None:
    run_id = shop["waiting"].run_id
    with client(app) as http:
        http.get("/runs")  # a browser that visited the dashboard has its cookies
        csrf = http.cookies["durable_csrf"]
        forged = http.post(
            f"/runs/{run_id}/do/cancel",
            data={},
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
            follow_redirects=False,
        )
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert app.get_run(run_id).status == "waiting"
        genuine = http.post(
            f"/runs/{run_id}/do/cancel",
            data={"csrf": csrf},
            headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"},
            follow_redirects=False,
        )
        assert genuine.status_code == 303
        wait_for(lambda: app.get_run(run_id).status == "cancelled", what="cancelled")


def test_read_only_answers_every_action_with_403(app: durable.App, shop: dict[str, Any]) -> None:
    run_id = shop["waiting"].run_id
    with client(app, read_only=True) as http:
        assert http.get(f"/runs/{run_id}").status_code == 200
        for path in (f"/api/runs/{run_id}/cancel", "/api/runs/bulk/cancel"):
            refused = http.post(path, json={"run_ids": [run_id]})
            assert refused.status_code == 403
            assert refused.json() == {"error": "the dashboard is read-only"}
    assert app.get_run(run_id).status == "waiting"


def test_bulk_by_filter_acts_on_exactly_the_matching_runs(
    app: durable.App, shop: dict[str, Any]
) -> None:
    more = [app.start(shop["order"], f"o-{i}") for i in range(2, 6)]
    keep = app.start("other")
    for handle in [*more, keep]:
        wait_for(lambda h=handle: app.get_run(h.run_id).status == "waiting", what="waiting")
    with client(app) as http:
        started = http.post("/api/runs/bulk/cancel", json={"filter": {"workflow": "order"}})
        assert started.status_code == 202
        job_id = started.json()["job"]["id"]

        def finished() -> dict[str, Any] | None:
            job = http.get(f"/api/jobs/{job_id}").json()["job"]
            return job if job["state"] == "finished" else None

        job = wait_for(finished, what="the bulk job")
        assert job["total"] == 5 and job["done"] == 5 and job["failed"] == 0
    # a run a worker holds takes its cancel from its inbox: it ends a moment later
    wait_for(
        lambda: {app.get_run(h.run_id).status for h in [shop["waiting"], *more]} == {"cancelled"},
        what="every matching run cancelled",
    )
    assert app.get_run(keep.run_id).status == "waiting"


def test_timeseries_counts_runs_per_hour(app: durable.App, shop: dict[str, Any]) -> None:
    app.signal(shop["waiting"].run_id, "approve", True)
    shop["waiting"].result(timeout=30)
    buckets = app.timeseries()
    assert len(buckets) == 24
    assert sum(b.started for b in buckets) == 1 and sum(b.completed for b in buckets) == 1
    last = buckets[-1]
    assert last.completed == 1 and last.p50_seconds is not None and last.p50_seconds > 0
    day = app.timeseries("day", since=datetime.now(UTC) - timedelta(days=3))
    assert len(day) == 4 and sum(b.started for b in day) == 1
    with pytest.raises(durable.InvalidArgument, match="granularity"):
        app.timeseries("week")


def test_another_site_cannot_reach_it_by_dns_rebinding_or_from_another_port(
    app: durable.App, shop: dict[str, Any]
) -> None:
    run_id = shop["waiting"].run_id
    with client(app) as http:
        # a page of attacker.test whose name resolves to 127.0.0.1: its Host gives it away
        rebound = http.get("/api/runs", headers={"Host": "attacker.test:8000"})
        assert rebound.status_code == 403
        http.get("/runs")
        csrf = http.cookies["durable_csrf"]  # a page on another port can read this cookie
        other_port = http.post(
            f"/runs/{run_id}/do/cancel",
            data={"csrf": csrf},
            headers={"Origin": "http://127.0.0.1:8199", "Sec-Fetch-Site": "same-site"},
            follow_redirects=False,
        )
        assert other_port.status_code == 403
    assert app.get_run(run_id).status == "waiting"
    # with a token, the Host is not what protects it
    with client(app, token="t") as http:
        named = http.get(
            "/api/runs", headers={"Host": "durable.example.com", "Authorization": "Bearer t"}
        )
        assert named.status_code == 200


def test_it_works_mounted_under_a_prefix(app: durable.App, shop: dict[str, Any]) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/durable", app=asgi(app, token="t"))])
    with TestClient(outer, base_url="http://127.0.0.1:8000") as http:
        page = http.get("/durable/runs", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/durable/login?next=")
        assert http.get("/durable/api/runs").status_code == 401
        login = http.get("/durable/login")
        assert 'action="/durable/login"' in login.text and "/durable/static/style.css" in login.text
        csrf = http.cookies["durable_csrf"]
        done = http.post(
            "/durable/login",
            data={"token": "t", "csrf": csrf, "next": "/runs"},
            follow_redirects=False,
        )
        assert done.headers["location"] == "/durable/runs"
        runs = http.get("/durable/runs")
        assert (
            runs.status_code == 200
            and f'href="/durable/runs/{shop["waiting"].run_id}"' in runs.text
        )


def test_bad_requests_get_one_line_and_change_nothing(
    app: durable.App, shop: dict[str, Any]
) -> None:
    run_id = shop["waiting"].run_id
    with client(app) as http:
        for body in (
            {"filter": {"stauts": "failed"}},
            {"filter": {"status": ["failed"]}},
            {"filter": {"status": "bogus"}},
            {"filter": "failed"},
            {},
        ):
            refused = http.post("/api/runs/bulk/cancel", json=body)
            assert refused.status_code == 400, (body, refused.text)
            assert "\n" not in refused.json()["error"]
        for body in ({"name": ""}, {"name": {"a": 1}}):
            assert http.post(f"/api/runs/{run_id}/signal", json=body).status_code == 400
        for at_seq in (True, 1.7, "x", 2**40, 0):
            forked = http.post(f"/api/runs/{run_id}/fork", json={"at_seq": at_seq})
            assert forked.status_code == 400
        assert http.get("/runs?status=bogus").status_code == 200  # the page says why
        assert "unknown status" in http.get("/runs?status=bogus").text
        assert http.get("/runs?offset=99999999999999999999").status_code == 200
        assert http.get("/api/runs/a%00b").status_code == 404
        assert http.get("/jobs/nope").status_code == 404
        assert http.get("/api/nope").json()["error"].startswith("no such endpoint")
    assert app.get_run(run_id).status == "waiting"
    assert app.list_runs().total == 1


def test_a_schedule_whose_name_has_a_slash_can_be_paused(
    app: durable.App, shop: dict[str, Any]
) -> None:
    from durable.store import ScheduleStore  # noqa: F401  (the name is what matters)

    app.schedule("reports/daily", "other", cron="0 6 * * *")
    with client(app) as http:
        with app.worker(concurrency=1, poll_interval=0.2):
            wait_for(lambda: app.list_schedules(), what="the schedule written")
        http.get("/schedules")
        csrf = http.cookies["durable_csrf"]
        done = http.post(
            "/schedules/reports/daily/do/pause", data={"csrf": csrf}, follow_redirects=False
        )
        assert done.status_code == 303 and "error" not in done.headers["location"]
    assert app.list_schedules()[0].paused


def test_the_database_away_is_a_503_with_one_line(dsn: str) -> None:
    gone = durable.App("postgresql://nobody@127.0.0.1:9/none")
    with client(gone) as http:
        answer = http.get("/api/runs")
        assert answer.status_code == 503 and "\n" not in answer.json()["error"]
        page = http.get("/runs")
        assert page.status_code == 503 and "Traceback" not in page.text


def test_the_command_serves_it_on_loopback(dsn: str, tmp_path: Any) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DURABLE_HOME": str(tmp_path / "home")}
    server = subprocess.Popen(
        [sys.executable, "-m", "durable", "dashboard", "--dsn", dsn, "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(answers, what="the dashboard answering")
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert f"pgdurable dashboard on http://127.0.0.1:{port}/" in err
