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
    assert {app.get_run(h.run_id).status for h in [shop["waiting"], *more]} == {"cancelled"}
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
