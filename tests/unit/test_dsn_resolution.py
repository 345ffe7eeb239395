"""Where the DSN comes from: argument, then DURABLE_DSN, then the embedded server."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from durable import ConfigError, DurableError, _embedded
from durable._embedded import durable_home, embedded_status, embedded_url, resolve_dsn


@pytest.fixture(autouse=True)
def _no_embedded_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a test here would start a real server."""

    def refuse(home: object = None) -> str:
        raise AssertionError("embedded_start called")

    monkeypatch.setattr(_embedded, "embedded_start", refuse)
    monkeypatch.delenv("DURABLE_DSN", raising=False)
    monkeypatch.delenv("DURABLE_HOME", raising=False)


def test_the_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_DSN", "postgresql:///from_env")
    assert resolve_dsn("postgresql:///from_arg") == "postgresql:///from_arg"


def test_the_environment_wins_over_the_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_DSN", "postgresql:///from_env")
    assert resolve_dsn(None) == "postgresql:///from_env"


def test_without_a_dsn_the_embedded_server_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_embedded, "embedded_start", lambda home=None: "postgresql:///embedded")
    assert resolve_dsn(None) == "postgresql:///embedded"
    assert resolve_dsn("") == "postgresql:///embedded"


def test_without_a_dsn_or_the_embedded_extra_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.undo()  # the real embedded_start, with no binaries to find
    monkeypatch.delenv("DURABLE_DSN", raising=False)
    monkeypatch.setenv("DURABLE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_embedded, "_find_bin_dir", lambda: None)

    with pytest.raises(ConfigError) as caught:
        resolve_dsn(None)

    message = str(caught.value)
    assert isinstance(caught.value, DurableError)
    assert "\n" not in message
    assert "DURABLE_DSN" in message
    assert "pip install 'pgdurable[embedded]'" in message
    assert not (tmp_path / "home").exists()


def test_home_defaults_to_dot_durable_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert durable_home() == tmp_path.resolve() / ".durable"
    monkeypatch.setenv("DURABLE_HOME", "relative/home")
    assert durable_home() == tmp_path.resolve() / "relative" / "home"
    assert durable_home("/elsewhere") == Path("/elsewhere")


def test_the_embedded_url_is_a_unix_socket_in_the_data_directory(tmp_path: Path) -> None:
    home = tmp_path / "with space"
    url = embedded_url(home)
    assert url.startswith("postgresql://postgres@/postgres?host=")
    params = conninfo_to_dict(url)
    assert params["host"] == str(home / "pgdata")
    assert params["dbname"] == "postgres"
    assert params["user"] == "postgres"


def test_a_long_home_puts_the_socket_in_a_short_directory(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 120)
    host = str(conninfo_to_dict(embedded_url(home))["host"])
    assert host.startswith("/tmp/pgdurable-")
    assert host == conninfo_to_dict(embedded_url(home))["host"]  # stable
    assert len(host) < 40


def test_status_of_a_home_never_started(tmp_path: Path) -> None:
    status = embedded_status(tmp_path / "home")
    assert status["running"] is False
    assert status["pid"] is None
    assert status["initialized"] is False
    assert status["data_dir"] == str(tmp_path / "home" / "pgdata")
    assert status["url"] == embedded_url(tmp_path / "home")
