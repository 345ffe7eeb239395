"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a
uvicorn server and a worker on a real database. Screenshots of every page are saved
under $DURABLE_SCREENSHOTS (default: the test's tmp dir) to be looked at."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")
pytest.importorskip("uvicorn")

import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

import durable
from durable.dashboard import asgi

from .waiting import wait_for

CHROMIUM = os.environ.get("DURABLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shop(app: durable.App, worker: Any) -> Iterator[dict[str, Any]]:
    tries: dict[str, int] = {}

    @app.step("charge", retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.05))
    def charge(order: str) -> str:
        tries[order] = tries.get(order, 0) + 1
        if tries[order] == 1:
            raise ConnectionError("card network timeout")
        return f"receipt for {order}"

    @app.workflow(name="order")
    def order(ctx: durable.Context, order_id: str) -> Any:
        ctx.set_status("charging")
        receipt = yield charge(order_id)
        ctx.set_status("awaiting approval")
        approved = yield ctx.wait_signal("approve")
        return {"receipt": receipt, "approved": approved}

    @app.workflow(name="newsletter")
    def newsletter(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("send")

    app.queue("mail", concurrency=2)
    app.schedule("nightly", newsletter, cron="0 3 * * *")
    with worker(app):
        runs = [app.start(order, f"o-{i}") for i in range(3)]
        letters = [app.start(newsletter) for _ in range(2)]
        for handle in [*runs, *letters]:
            wait_for(lambda h=handle: app.get_run(h.run_id).status == "waiting", what="waiting")
        yield {"orders": runs, "letters": letters}


@pytest.fixture
def server(app: durable.App, shop: dict[str, Any]) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        asgi(app), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    wait_for(lambda: running.started, what="the dashboard server")
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True  # open live streams are cut after the 1 s grace
    thread.join(10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DURABLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_every_page_renders_with_real_runs(
    page: Page, server: str, shop: dict[str, Any], shots: Path
) -> None:
    run_id = shop["orders"][0].run_id
    for name, path, text in [
        ("overview", "/", "Last 24 hours"),
        ("runs", "/runs", "awaiting approval"),
        ("run", f"/runs/{run_id}", "Timeline"),
        ("workers", "/workers", "runs held"),
        ("queues", "/queues", "mail"),
        ("schedules", "/schedules", "nightly"),
    ]:
        response = page.goto(server + path)
        assert response is not None and response.status == 200, path
        expect(page.locator("main")).to_contain_text(text)
        page.screenshot(path=str(shots / f"dashboard-{name}.png"), full_page=True)
    assert len(list(shots.glob("dashboard-*.png"))) == 6


def test_click_from_the_list_to_a_run_whose_timeline_shows_each_attempt(
    page: Page, server: str, shop: dict[str, Any]
) -> None:
    run_id = shop["orders"][1].run_id
    page.goto(server + "/runs?workflow=order")
    page.click(f"a[href='/runs/{run_id}']")
    expect(page.locator("h1")).to_contain_text(run_id)
    lane = page.locator(".lane", has_text="charge")
    expect(lane.locator(".bar")).to_have_count(2)  # the failed attempt and its retry
    expect(lane.locator(".bar.attempt-failed")).to_have_count(1)
    expect(lane.locator(".bar.attempt-ok")).to_have_count(1)


def test_a_signal_sent_from_the_page_completes_the_run(
    page: Page, server: str, shop: dict[str, Any], app: durable.App
) -> None:
    handle = shop["orders"][2]
    page.goto(f"{server}/runs/{handle.run_id}")
    page.fill("form.signal input[name=name]", "approve")
    page.fill("form.signal textarea[name=payload]", '{"by": "<b>ops</b>"}')
    page.click("form.signal button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("signal: done")
    assert handle.result(timeout=30)["approved"] == {"by": "<b>ops</b>"}
    # the page catches up by itself, and shows the payload as text
    expect(page.locator("#run-summary .status")).to_have_text("completed", timeout=10_000)
    expect(page.locator("#run-events")).to_contain_text("<b>ops</b>")


def test_a_live_update_arrives_without_a_reload(
    page: Page, server: str, shop: dict[str, Any], app: durable.App
) -> None:
    handle = shop["orders"][0]
    page.goto(f"{server}/runs/{handle.run_id}")
    expect(page.locator("#run-summary .status")).to_have_text("waiting")
    page.evaluate("window.__same_page = true")
    app.signal(handle.run_id, "approve", True)
    expect(page.locator("#run-summary .status")).to_have_text("completed", timeout=10_000)
    assert page.evaluate("window.__same_page") is True  # no reload happened


def test_bulk_cancel_by_filter_cancels_exactly_the_matching_runs(
    page: Page, server: str, shop: dict[str, Any], app: durable.App
) -> None:
    page.goto(server + "/runs?workflow=newsletter&status=waiting")
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    page.select_option("select[name=action]", "cancel")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[value=filter]")
    expect(page.locator("#job")).to_contain_text("finished", timeout=20_000)
    expect(page.locator("#job")).to_contain_text("2 done")
    wait_for(
        lambda: {app.get_run(h.run_id).status for h in shop["letters"]} == {"cancelled"},
        what="both newsletters cancelled",
    )
    assert {app.get_run(h.run_id).status for h in shop["orders"]} == {"waiting"}
