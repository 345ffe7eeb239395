"""The pytest plugin in a project of a user's: nothing but pgdurable installed, an `app`
fixture, and the `durable_env` fixture the plugin registers through its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SHOP = """
from datetime import timedelta
import durable

app = durable.App()

@app.step()
def charge(amount: int) -> str:
    return f"charged {amount}"

@app.workflow()
def renewal(ctx, amount: int):
    first = yield charge(amount)
    yield ctx.sleep(timedelta(days=30))
    second = yield charge(amount)
    return [first, second]
"""

CONFTEST = """
import pytest
import shop

@pytest.fixture
def app():
    return shop.app
"""

TESTS = """
from datetime import timedelta
import pytest
import shop

def test_a_month_passes_in_no_time(durable_env):
    handle = shop.app.start(shop.renewal, 5)
    assert handle.result(timeout=30) == ["charged 5", "charged 5"]
    assert durable_env.now() - handle.info().created_at >= timedelta(days=30)

def test_steps_can_be_mocked(durable_env):
    durable_env.mock_step("charge", returns="mocked")
    assert shop.app.start(shop.renewal, 1).result(timeout=30) == ["mocked", "mocked"]

@pytest.mark.durable_env(auto_skip=False)
def test_options_come_through_the_marker(durable_env):
    assert durable_env.auto_skip is False
"""


def test_the_plugin_works_in_a_fresh_project(dsn: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "shop.py").write_text(textwrap.dedent(SHOP))
    (project / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (project / "test_shop.py").write_text(textwrap.dedent(TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DURABLE_", "PYTEST_"))}
    env["DURABLE_TEST_DSN"] = dsn
    env["PYTHONPATH"] = str(project)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    # the env made its schemas in the test database, and dropped them
    assert not (project / ".durable").exists()
