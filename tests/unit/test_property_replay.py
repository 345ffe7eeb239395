"""Property: a crash at any point, then replay and continue, changes nothing.

Hypothesis writes random workflow programs (sequences and nestings of steps, sleeps,
signal waits with and without timeouts, all/any, try/except around failing steps,
patched/set_status, deterministic helpers) and a random world (signal arrival times, a
cancellation). The program runs uninterrupted once; then, for a random batch boundary,
a fresh engine is rebuilt from the log written up to there and the run continues. The
log and the outcome must be exactly those of the uninterrupted run, and replaying the
whole log from scratch must reach the same outcome without asking to record anything.
``DURABLE_PROPERTY_EXAMPLES`` sets how many programs (default 500; 10000 is the long mode).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import Script, Sim, SimStep

from durable.replay import (
    Blocked,
    Cancelled,
    Command,
    Completed,
    Context,
    Failed,
    Outcome,
    StepFailed,
    WaitTimeout,
)


def _op(label: str, fails: int, *, attempt: int) -> str:
    if attempt <= fails:
        raise ValueError(f"{label} failed on attempt {attempt}")
    return f"{label}@{attempt}"


OPS = {
    "once": SimStep(_op, "once", max_attempts=1),
    "thrice": SimStep(_op, "thrice", max_attempts=3, retry_interval=2.0),
}

# -- programs -------------------------------------------------------------------------------

labels = st.sampled_from(["a", "b", "c", "d"])
leaf = st.one_of(
    st.tuples(st.just("step"), st.sampled_from(sorted(OPS)), labels, st.integers(0, 3)),
    st.tuples(st.just("sleep"), st.integers(0, 40)),
    st.tuples(
        st.just("signal"), st.sampled_from(["x", "y"]), st.one_of(st.none(), st.integers(1, 30))
    ),
)
tree = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.tuples(st.just("all"), st.lists(children, max_size=3).map(tuple)),
        st.tuples(st.just("any"), st.lists(children, min_size=1, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)
statement = st.one_of(
    st.tuples(st.just("cmd"), tree, st.booleans()),
    st.tuples(st.just("patched"), st.sampled_from(["p1", "p2"])),
    st.tuples(st.just("status"), st.integers(0, 9)),
    st.tuples(st.just("helpers")),
)
programs = st.fixed_dictionaries(
    {"body": st.lists(statement, min_size=3, max_size=12), "catch_cancel": st.booleans()}
)
worlds = st.builds(
    lambda signals, cancel: Script(
        signals=sorted(signals),
        cancels=[] if cancel is None else [(cancel, "stop")],
    ),
    st.lists(
        st.tuples(st.integers(0, 80), st.sampled_from(["x", "y"]), st.integers(0, 9)), max_size=8
    ),
    st.one_of(st.none(), st.integers(0, 120)),
)


def _build(ctx: Context, node: tuple[Any, ...]) -> Command:
    kind = node[0]
    if kind == "step":
        _, op, label, fails = node
        return OPS[op](label, fails)  # type: ignore[no-any-return]
    if kind == "sleep":
        return ctx.sleep(node[1])
    if kind == "signal":
        return ctx.wait_signal(node[1], timeout=node[2])
    children = [_build(ctx, child) for child in node[1]]
    return ctx.all(*children) if kind == "all" else ctx.any(*children)


def _statement(ctx: Context, stmt: tuple[Any, ...]) -> Any:
    kind = stmt[0]
    if kind == "cmd":
        _, node, catch = stmt
        try:
            return (yield _build(ctx, node))
        except (StepFailed, WaitTimeout) as exc:
            if not catch:
                raise
            return f"caught {type(exc).__name__}"
    if kind == "patched":
        if ctx.patched(stmt[1]):
            return ["patched", (yield OPS["once"](stmt[1], 0))]
        return "unpatched"
    if kind == "status":
        ctx.set_status(stmt[1])
        return None
    return [ctx.now().isoformat(), ctx.random().randint(0, 10**6), str(ctx.uuid4())]


def program(ctx: Context, prog: dict[str, Any]) -> Any:
    out: list[Any] = []
    try:
        for stmt in prog["body"]:
            out.append((yield from _statement(ctx, stmt)))
    except Cancelled:
        if not prog["catch_cancel"]:
            raise
        out.append((yield OPS["once"]("compensate", 0)))
    return out


def _summary(outcome: Outcome | None) -> Any:
    """Outcomes compare by value (exceptions compare by identity)."""
    if isinstance(outcome, Failed):
        return ("failed", type(outcome.error).__name__, str(outcome.error), outcome.cause_pos)
    return outcome


# -- the property ---------------------------------------------------------------------------


#: CI runs the short mode; DURABLE_PROPERTY_EXAMPLES=10000 is the long one (run before a
#: release: every program crashed at a random point must replay without a divergence)
EXAMPLES = int(os.environ.get("DURABLE_PROPERTY_EXAMPLES", "500"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(prog=programs, world=worlds, data=st.data())
def test_crash_anywhere_then_replay_and_continue_gives_the_same_log(
    prog: dict[str, Any], world: Script, data: st.DataObject
) -> None:
    full = Sim(program, prog, script=world).run()
    assert not isinstance(full.outcome, Blocked), full.outcome

    cut = data.draw(st.sampled_from(full.boundaries), label="crash after event")
    resumed = full.resumed(cut).run()

    assert resumed.log == full.log
    assert _summary(resumed.outcome) == _summary(full.outcome)

    from_scratch = full.replayed()
    assert _summary(from_scratch.outcome) == _summary(full.outcome)
    assert from_scratch.take_markers() == []
    if full.outcome is None:  # still waiting: the same work is pending
        assert from_scratch.pending() == full.engine.pending()


def test_the_program_interpreter_covers_the_interesting_cases() -> None:
    """A fixed program through the same machinery, asserting exact results."""
    prog = {
        "body": [
            ("cmd", ("step", "thrice", "a", 2), False),
            ("cmd", ("step", "once", "b", 1), True),
            ("cmd", ("any", (("sleep", 5), ("signal", "x", None))), False),
            ("cmd", ("all", (("step", "once", "c", 0), ("signal", "y", 3))), True),
            ("patched", "p1"),
            ("status", 4),
        ],
        "catch_cancel": False,
    }
    sim = Sim(program, prog, script=Script(signals=[(1, "x", 7)])).run()

    assert isinstance(sim.outcome, Completed)
    assert sim.result == [
        "a@3",
        "caught StepFailed",
        (1, 7),
        "caught WaitTimeout",
        ["patched", "p1@1"],
        None,
    ]
