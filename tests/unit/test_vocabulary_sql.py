"""The SQL names only run statuses and event types that replay/vocabulary.py defines.

A small regular-expression parser finds every string literal compared with (or written
to) a ``status`` or ``type`` column in sql/schema.sql, the migrations and sql/queries.sql:
``status IN ('pending', ...)``, ``CHECK (status IN (...))``, ``r.status = 'x'``,
``e.type NOT IN (...)``, ``%(status)s IN (...)``, ``status ... DEFAULT 'x'`` and
``INSERT INTO t (..., status, ...) VALUES (..., 'x', ...)``. ``status`` literals must be
:class:`RunStatus` values and ``type`` literals :class:`EventType` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import pytest

from durable.replay.vocabulary import CLAIMABLE_STATUSES, EventType, RunStatus

VOCABULARY: dict[str, frozenset[str]] = {
    "status": frozenset(RunStatus),
    "type": frozenset(EventType),
}

_COMMENT = re.compile(r"--[^\n]*")
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
# A status or type column, maybe qualified (r.status), or a parameter named so.
# Not custom_status, not the JSON key in e->>'type'.
_SUBJECT = r"(?:%\((?P<param>status|type)\)s|(?<![\w'.])(?:\w+\.)?(?P<column>status|type)\b)"
_COMPARISON = re.compile(
    _SUBJECT + r"\s*(?P<op>=|<>|!=|(?:NOT\s+)?IN\b)\s*(?P<rhs>'(?:[^']|'')*'|\([^()]*\))",
    re.IGNORECASE,
)
_DEFAULT = re.compile(_SUBJECT + r"[^,;()]*?\bDEFAULT\s+(?P<rhs>'(?:[^']|'')*')", re.IGNORECASE)
# two levels of nesting: %(name)s, now(), (%(events)s::jsonb -> 0)::text
_PARENS = r"\((?P<{}>(?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)"
_INSERT = re.compile(
    r"INSERT\s+INTO\s+[\w.]+\s*"
    + _PARENS.format("columns")
    + r"\s*VALUES\s*"
    + _PARENS.format("values"),
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Comparison:
    """Literals compared with (or written to) a status or type column on one line."""

    line: int
    column: str  # "status" or "type"
    op: str  # "=", "IN", "NOT IN", "DEFAULT", "VALUES", ...
    literals: tuple[str, ...]

    def __str__(self) -> str:
        return f"line {self.line}: {self.column} {self.op} {self.literals}"


def _split_top_level(text: str) -> list[str]:
    """``a, f(b, c), d`` -> ``['a', 'f(b, c)', 'd']``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def find_comparisons(text: str) -> list[Comparison]:
    """Every list of string literals compared with a status or type column in ``text``."""
    # Comments are blanked, not removed, so that line numbers stay right.
    text = _COMMENT.sub("", text)

    def line(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def literals(rhs: str) -> tuple[str, ...]:
        return tuple(value.replace("''", "'") for value in _LITERAL.findall(rhs))

    found = []
    for pattern in (_COMPARISON, _DEFAULT):
        for m in pattern.finditer(text):
            op = " ".join(m["op"].upper().split()) if pattern is _COMPARISON else "DEFAULT"
            if values := literals(m["rhs"]):
                found.append(Comparison(line(m.start()), m["param"] or m["column"], op, values))
    for m in _INSERT.finditer(text):
        columns, values = _split_top_level(m["columns"]), _split_top_level(m["values"])
        for column, value in zip(columns, values, strict=False):
            if column.lower() in VOCABULARY and _LITERAL.fullmatch(value):
                found.append(Comparison(line(m.start()), column.lower(), "VALUES", literals(value)))
    return sorted(found, key=lambda c: c.line)


def unknown_literals(text: str) -> list[str]:
    """One message per literal that is not in the vocabulary of the column it meets."""
    return [
        f"{comparison}: {literal!r} is not "
        + ("a RunStatus" if comparison.column == "status" else "an EventType")
        for comparison in find_comparisons(text)
        for literal in comparison.literals
        if literal not in VOCABULARY[comparison.column]
    ]


def _sql_files() -> dict[str, str]:
    folder = resources.files("durable.sql")
    files = {"sql/schema.sql": folder / "schema.sql", "sql/queries.sql": folder / "queries.sql"}
    for entry in sorted((folder / "migrations").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            files[f"sql/migrations/{entry.name}"] = entry
    return {name: entry.read_text(encoding="utf-8") for name, entry in files.items()}


SQL_FILES = _sql_files()


def _in_list(text: str, what: str) -> list[str]:
    """The one ``status IN (...)`` list in ``text`` (a statement), as written."""
    lists = [c.literals for c in find_comparisons(text) if c.column == "status" and c.op == "IN"]
    assert len(lists) == 1, f"expected one status IN (...) list in {what}, found {lists}"
    return list(lists[0])


def _query(name: str) -> str:
    """The block ``-- name: <name>`` of sql/queries.sql."""
    blocks = re.split(r"^--\s*name:\s*", SQL_FILES["sql/queries.sql"], flags=re.MULTILINE)
    matching = [block for block in blocks[1:] if block.split(None, 1)[0] == name]
    assert len(matching) == 1, f"sql/queries.sql has {len(matching)} queries named {name!r}"
    return matching[0]


def _statement(text: str, pattern: str) -> str:
    match = re.search(pattern + r"[^;]*", _COMMENT.sub("", text), re.IGNORECASE)
    assert match, f"no statement matches {pattern!r}"
    return match[0]


@pytest.mark.parametrize("name", list(SQL_FILES))
def test_every_status_and_event_type_literal_is_in_the_vocabulary(name: str) -> None:
    unknown = unknown_literals(SQL_FILES[name])
    assert not unknown, f"{name} names values that replay/vocabulary.py does not:\n" + "\n".join(
        unknown
    )


def test_the_parser_finds_the_comparisons_in_the_shipped_files() -> None:
    """A guard against a parser that finds nothing (and so never fails)."""
    found = {name: find_comparisons(text) for name, text in SQL_FILES.items()}
    queries = found["sql/queries.sql"]
    assert {c.column for c in queries} == {"status", "type"}
    assert {"=", "IN", "VALUES"} <= {c.op for c in queries}
    assert {"IN", "DEFAULT"} <= {c.op for c in found["sql/schema.sql"]}
    assert any(c.op == "IN" for c in found["sql/migrations/0001_initial.sql"])


def test_the_runs_check_names_exactly_the_run_statuses() -> None:
    table = _statement(SQL_FILES["sql/schema.sql"], r"CREATE\s+TABLE\s+runs\b")
    check = re.search(r"CHECK\s*\((?:[^()]|\([^()]*\))*\)", table)
    assert check, "the runs table in sql/schema.sql has no CHECK"
    statuses = _in_list(check[0], "the CHECK of runs")
    assert len(statuses) == len(set(statuses)), f"a status is listed twice: {statuses}"
    assert set(statuses) == set(RunStatus), (
        f"the CHECK of runs in sql/schema.sql lists {sorted(statuses)}, "
        f"RunStatus has {sorted(RunStatus)}"
    )


def test_the_claimable_index_and_the_claim_query_list_the_claimable_statuses() -> None:
    index = _statement(SQL_FILES["sql/schema.sql"], r"CREATE\s+INDEX\s+runs_claimable\b")
    claimable = sorted(CLAIMABLE_STATUSES)
    in_index = _in_list(index, "the runs_claimable index")
    assert set(in_index) == CLAIMABLE_STATUSES, (
        f"the runs_claimable index lists {sorted(in_index)}, CLAIMABLE_STATUSES is {claimable}"
    )
    # The claim query can use the partial index only if its condition implies the index's.
    in_claim = _in_list(_query("claim"), "the claim query")
    assert set(in_claim) == CLAIMABLE_STATUSES, (
        f"the claim query lists {sorted(in_claim)}, CLAIMABLE_STATUSES is {claimable}"
    )


def test_the_parser_reports_a_value_outside_the_vocabulary() -> None:
    text = """
        -- a comment is no SQL: status = 'nonsense'
        SELECT 1 FROM runs WHERE status IN ('pending', 'bogus');
        UPDATE runs AS r SET custom_status = 'free text' WHERE r.status = 'finished';
        SELECT e->>'type' FROM events AS e WHERE e.type NOT IN ('run_started', 'run_ended');
        SELECT CASE WHEN %(status)s IN ('paused', 'asleep') THEN 1 END;
        CREATE TABLE t (status text NOT NULL DEFAULT 'new', type text);
        INSERT INTO runs (run_id, status, wake_at) VALUES (%(id)s, 'queued', now());
    """
    assert [str(c) for c in find_comparisons(text)] == [
        "line 3: status IN ('pending', 'bogus')",
        "line 4: status = ('finished',)",
        "line 5: type NOT IN ('run_started', 'run_ended')",
        "line 6: status IN ('paused', 'asleep')",
        "line 7: status DEFAULT ('new',)",
        "line 8: status VALUES ('queued',)",
    ]
    assert [message.split(": ")[-1] for message in unknown_literals(text)] == [
        "'bogus' is not a RunStatus",
        "'finished' is not a RunStatus",
        "'run_ended' is not an EventType",
        "'asleep' is not a RunStatus",
        "'new' is not a RunStatus",
        "'queued' is not a RunStatus",
    ]
