"""Every benchmark on one server or two, and the results table of benchmarks/README.md.

    python benchmarks/run_all.py                # the embedded PostgreSQL 18 and PostgreSQL 15
    python benchmarks/run_all.py --servers 18   # one of them
    python benchmarks/run_all.py --skip-scale --quick   # a smoke run, a few minutes

For each server it starts one throwaway cluster (the embedded PostgreSQL 18, or Debian's
PostgreSQL 15 from ``$PG15_BIN``, default /usr/lib/postgresql/15/bin, through
``.ci/pg15``) with ``pg_stat_statements`` preloaded, and runs on it, one after the
other: ``bench_runtime.py`` (the pgbench limit, serial, throughput, statements per step;
DBOS), ``bench_start_while_running.py`` (the started-while-running shapes; DBOS and
Absurd), ``bench_signal_latency.py`` and ``bench_scale.py`` (a million runs; minutes).
Each script prints its own table as it goes and writes its figures as JSON; at the end
this script prints one table of every figure and writes it into benchmarks/README.md
between the ``results:begin`` and ``results:end`` markers, with the date and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from _server import BenchServer  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
PG15_BIN = os.environ.get("PG15_BIN", "/usr/lib/postgresql/15/bin")


# -- servers ----------------------------------------------------------------------------------


@contextmanager
def embedded_server() -> Iterator[tuple[str, Path | None]]:
    with BenchServer() as server:  # pg_stat_statements preloaded
        yield server.admin_dsn, server.home / "server.log" if server.home else None


@contextmanager
def pg15_server() -> Iterator[tuple[str, Path | None]]:
    """A throwaway PostgreSQL 15 cluster (.ci/pg15) restarted with pg_stat_statements."""
    folder = Path(tempfile.mkdtemp(prefix="pgdurable-bench15-"))
    script = ROOT / ".ci" / "pg15"
    env = {**os.environ, "PG15_BIN": PG15_BIN}
    dsn = subprocess.run(
        [str(script), "start", str(folder)], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # the server keeps the pg_ctl's output open: a log file, not a pipe to wait on
        subprocess.run(
            [
                *owner,
                f"{PG15_BIN}/pg_ctl",
                "-D",
                str(folder / "data"),
                "-w",
                "-l",
                str(folder / "server.log"),
                "restart",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        yield dsn, folder / "server.log"
    finally:
        subprocess.run([str(script), "stop", str(folder)], capture_output=True, env=env)


SERVERS = {"18": embedded_server, "15": pg15_server}


# -- running the scripts ----------------------------------------------------------------------


def run(script: str, dsn: str, extra: list[str]) -> dict[str, Any] | None:
    """Run one benchmark on ``dsn``; its JSON figures (None if it failed)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        target = Path(out.name)
    cmd = [sys.executable, str(HERE / script), "--dsn", dsn, "--json", str(target), *extra]
    print(f"\n==> {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT)
    print(f"    ({time.monotonic() - started:.0f} s)", flush=True)
    try:
        return json.loads(target.read_text()) if done.returncode == 0 else None
    except (OSError, ValueError):
        return None
    finally:
        target.unlink(missing_ok=True)


def measure(version: str, dsn: str, log: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    quick = ["--quick"] if args.quick else []
    figures: dict[str, Any] = {
        "runtime": run("bench_runtime.py", dsn, quick),
        "shapes": run("bench_start_while_running.py", dsn, ["--reps", "1" if args.quick else "3"]),
        "signals": run("bench_signal_latency.py", dsn, quick),
    }
    if not args.skip_scale:
        scale = ["--runs", "100000", "--active", "1000"] if args.quick else []
        scale += ["--server-log", str(log)] if log else []
        figures["scale"] = run("bench_scale.py", dsn, scale)
    return figures


# -- the table ---------------------------------------------------------------------------------


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def rows_of(version: str, f: dict[str, Any]) -> list[list[str]]:
    """Markdown rows: workload, system, value, unit, vs limit, vs DBOS, vs Absurd, target."""
    out: list[list[str]] = []
    rt = f.get("runtime")
    if rt:
        for r in rt["rows"]:
            fmt = r.get("fmt", ",.0f")
            vs_limit = "" if r.get("vs_limit") is None else f"{r['vs_limit']:.0%}"
            met = {True: " (met)", False: " (NOT met)"}.get(r.get("met"), "")
            out.append(
                [
                    r["workload"],
                    r["system"],
                    format(r["value"], fmt),
                    r["unit"],
                    vs_limit,
                    _x(r.get("vs_dbos")),
                    "",
                    (r.get("target") or "") + (met if r.get("target") else ""),
                ]
            )
    sh = f.get("shapes")
    if sh:
        med, label = sh["medians"], sh["label"]
        drain = med.get("pgdurable|drain", {}).get("rate")
        for scene in (
            "drain",
            "loop, same process",
            "start_many, same process",
            "loop, other process",
        ):
            for key in ("pgdurable", "dbos", "absurd"):
                m = med.get(f"{key}|{scene}")
                if not m:
                    continue
                ours = key == "pgdurable"
                vs = {p: med.get(f"{p}|{scene}", {}).get("rate") for p in ("dbos", "absurd")}
                start = f", start {m['start_ms']:.2f} ms" if m.get("start_ms") else ""
                target = ""
                if ours and scene != "start_many, same process":
                    target = "≥ 10x DBOS, ≥ 5x Absurd"
                    if scene != "drain" and drain:
                        target += f", ≥ 0.8x drain ({m['rate'] / drain:.2f}x)"
                    if scene == "loop, same process":
                        target += ", start < 0.5 ms"
                out.append(
                    [
                        f"1,000 x 3 steps, {scene}" if ours else "",
                        label[key],
                        f"{m['rate']:,.0f}",
                        f"workflows/s{start}",
                        "",
                        _x(m["rate"] / vs["dbos"]) if ours and vs["dbos"] else "",
                        _x(m["rate"] / vs["absurd"]) if ours and vs["absurd"] else "",
                        target,
                    ]
                )
        for key, value in sh.get("bytes_per_step", {}).items():
            out.append(
                [
                    "storage per step (what the drain added)" if key == "pgdurable" else "",
                    label[key],
                    f"{value:,.0f}",
                    "bytes (tables, indexes, TOAST)",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    sg = f.get("signals")
    if sg:
        for name, q in sg["scenarios"].items():
            out.append(
                [
                    f"signal → next step, {name}",
                    "pgdurable",
                    f"{q['50']:.2f}",
                    f"ms p50 (p99 {q['99']:.2f})",
                    "",
                    "",
                    "",
                    "p50 < 5 ms",
                ]
            )
    sc = f.get("scale")
    if sc:
        t = sc["throughput"]
        n = f"{sc['runs']:,}"
        out.append(
            [
                f"throughput at {n} runs",
                "pgdurable",
                f"{t['loaded']:,.0f}",
                f"workflows/s (empty: {t['empty']:,.0f})",
                "",
                "",
                "",
                f"≥ 0.90x empty ({t['loaded'] / t['empty']:.2f}x)",
            ]
        )
        for name, ms in sc["reads_loaded"].items():
            target = "< 5 ms" if name in ("get_run", "history") else "< 50 ms"
            out.append(
                [
                    f"{name} at {n} runs",
                    "pgdurable",
                    f"{ms:.1f}",
                    f"ms (empty: {sc['reads_empty'][name]:.1f})",
                    "",
                    "",
                    "",
                    target,
                ]
            )
        p = sc["prune"]
        out.append(
            [
                f"prune {p['runs']:,} runs",
                "pgdurable",
                f"{p['runs'] / p['seconds']:,.0f}",
                f"runs/s ({p['events'] / p['seconds']:,.0f} events/s)",
                "",
                "",
                "",
                "",
            ]
        )
        out.append(
            [
                "throughput during the prune",
                "pgdurable",
                f"{sc['during_prune']:,.0f}",
                "workflows/s",
                "",
                "",
                "",
                f"≥ 0.80x ({sc['during_prune'] / t['loaded']:.2f}x)",
            ]
        )
        if sc.get("claim_max_ms") is not None and sc.get("claim_max_ms_before") is not None:
            out.append(
                [
                    "longest claim statement during the prune",
                    "pgdurable",
                    f"{sc['claim_max_ms']:.1f}",
                    f"ms (before it: {sc['claim_max_ms_before']:.1f})",
                    "",
                    "",
                    "",
                    "",
                ]
            )
        if sc.get("lock_waits_during_prune", -1) >= 0:
            waits = str(sc["lock_waits_during_prune"])
            out.append(
                ["lock waits > 20 ms during the prune", "pgdurable", waits, "", "", "", "", "0"]
            )
        out.append(
            [
                "storage per step",
                "pgdurable",
                f"{sc['bytes_per_step']:,.0f}",
                "bytes (events and its indexes)",
                "",
                "",
                "",
                "",
            ]
        )
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"Run by `python benchmarks/run_all.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average at the end {os.getloadavg()[0]:.1f}. Medians; ratios are measured "
        "side by side in the same run on the same server.",
        "",
    ]
    for version, figures in results.items():
        lines += [
            f"**PostgreSQL {version}**",
            "",
            "| workload | system | value | unit | vs limit | vs DBOS | vs Absurd | target |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows_of(version, figures)]
        missing = [k for k, v in figures.items() if v is None]
        if missing:
            lines += ["", f"(failed on this server: {', '.join(missing)})"]
        lines.append("")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = HERE / "README.md"
    body = readme.read_text()
    if BEGIN in body and END in body:
        head, rest = body.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        body = f"{head}{BEGIN}\n{text}\n{END}{tail}"
    else:
        body += f"\n## Latest results\n\n{BEGIN}\n{text}\n{END}\n"
    readme.write_text(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=["18", "15"])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--skip-scale", action="store_true", help="leave bench_scale.py out")
    parser.add_argument("--no-readme", action="store_true", help="print, do not write README")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for version in args.servers:
        with SERVERS[version]() as (dsn, log):
            results[version] = measure(version, dsn, log, args)
    text = table(results)
    print("\n" + text)
    if not args.no_readme:
        write_readme(text)
        print(f"(written to {HERE / 'README.md'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
