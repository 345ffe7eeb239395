"""Architecture guards: the layering of durable/, replay/ and store/, read from the source.

The package ``durable`` comes from three folders (pyproject.toml ``package-dir``):

* ``durable/`` is ``durable``: the App, the worker, the command line;
* ``replay/`` is ``durable.replay``: the pure engine, standard library only;
* ``store/`` is ``durable.store``: the only code that talks to PostgreSQL.

Every check parses the files with ``ast`` and never imports them, so a layer that is
broken (or that imports something it must not) cannot hide behind an ImportError. Each
checker takes a folder and the dotted name of the package it holds, so the tests at the
end of the file run them on small synthetic trees to show that each guard does fail.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DURABLE_DIR = REPO / "durable"
REPLAY_DIR = REPO / "replay"
STORE_DIR = REPO / "store"

PSYCOPG = frozenset({"psycopg", "psycopg_pool"})
STORE_MAY_IMPORT_OF_REPLAY = ("durable.replay.errors", "durable.replay.vocabulary")
EXECUTE_METHODS = frozenset({"execute", "executemany"})


# -- reading imports -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRef:
    """One imported module: an ``import a, b`` statement gives one per name."""

    where: str  # "durable/_app.py:35", relative to the folder's parent
    statement: str  # the statement, on one line
    importer: str  # dotted name of the importing module
    module: str | None  # absolute module named; None: a relative import above the top package
    names: tuple[str, ...]  # the names of ``from m import ...``; () for ``import m``
    level: int  # dots of a relative import; 0 for an absolute one
    type_checking: bool  # inside the body of an ``if TYPE_CHECKING:``
    scope: str  # enclosing class/function ("App.worker"); "" at module level

    def describe(self) -> str:
        notes = []
        if self.level:
            notes.append(f"= {self.module}" if self.module else "beyond the top-level package")
        if self.type_checking:
            notes.append("if TYPE_CHECKING")
        if self.scope:
            notes.append(f"inside {self.scope}")
        return f"{self.where}: {self.statement}" + (f"  [{'; '.join(notes)}]" if notes else "")


def module_files(root: Path, package: str) -> dict[str, Path]:
    """The modules of the folder ``root``, which holds the package ``package``, by dotted name
    (``cli/_common.py`` is ``<package>.cli._common``, ``cli/__init__.py`` is ``<package>.cli``)."""
    if not (root / "__init__.py").is_file():
        # A moved or renamed folder must not let the guards pass on nothing.
        raise FileNotFoundError(f"{root} is not a package folder (no __init__.py)")
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    node: ast.AST, type_checking: bool, scope: str
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, str]]:
    """Every import statement under ``node``, at any depth (functions, classes, try, if)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, type_checking, scope
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for stmt in node.body:
            yield from _import_nodes(stmt, True, scope)
        for stmt in node.orelse:  # the ``else:`` of ``if TYPE_CHECKING:`` runs
            yield from _import_nodes(stmt, type_checking, scope)
    else:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope = f"{scope}.{node.name}" if scope else node.name
        for child in ast.iter_child_nodes(node):
            yield from _import_nodes(child, type_checking, scope)


def _resolve(this_package: str, level: int, module: str | None) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` in ``this_package``."""
    parts = this_package.split(".")
    if level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def iter_imports(root: Path, package: str) -> Iterator[ImportRef]:
    """Every import of every module of ``root``, relative ones resolved against ``package``."""
    for module, path in module_files(root, package).items():
        this_package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        display = path.relative_to(root.parent).as_posix()
        for node, type_checking, scope in _import_nodes(_parse(path), False, ""):
            where = f"{display}:{node.lineno}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    statement = ast.unparse(ast.Import(names=[alias]))
                    yield ImportRef(
                        where, statement, module, alias.name, (), 0, type_checking, scope
                    )
            else:
                target = (
                    _resolve(this_package, node.level, node.module) if node.level else node.module
                )
                names = tuple(alias.name for alias in node.names)
                yield ImportRef(
                    where,
                    ast.unparse(node),
                    module,
                    target,
                    names,
                    node.level,
                    type_checking,
                    scope,
                )


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- 1. import cycles ----------------------------------------------------------------------


def _graph_targets(ref: ImportRef, modules: Iterable[str]) -> set[str]:
    """The modules of the folder an import makes its module depend on.

    ``import a.b.c`` and ``from a.b.c import n`` run the packages ``a``, ``a.b`` and the module
    ``a.b.c``, and ``from a.b.c import n`` also runs ``a.b.c.n`` when that is a submodule. The
    packages that enclose the importer are left out: Python has started them before the
    importer, so they add no dependency, except that ``from <enclosing package> import name``
    with ``name`` not a submodule (``from .. import __version__``) reads the package's
    ``__init__`` and is an edge to it, while ``from . import sibling`` is an edge to the
    sibling only.
    """
    modules = set(modules)
    if ref.module is None:
        return set()
    parts = ref.importer.split(".")
    started = {".".join(parts[:i]) for i in range(1, len(parts))} | {ref.importer}
    enclosing = started - {ref.importer}
    mod_parts = ref.module.split(".")
    targets = {
        prefix
        for prefix in (".".join(mod_parts[:i]) for i in range(1, len(mod_parts)))
        if prefix in modules and prefix not in started
    }
    submodules = {f"{ref.module}.{n}" for n in ref.names if f"{ref.module}.{n}" in modules}
    targets |= submodules
    only_submodules = bool(ref.names) and len(submodules) == len(ref.names)
    if ref.module in modules and not (ref.module in enclosing and only_submodules):
        targets.add(ref.module)
    return targets


def import_graph(root: Path, package: str) -> dict[str, dict[str, list[ImportRef]]]:
    """importer -> imported module -> the imports that make the edge, between the modules of
    ``root`` only (modules of other folders, e.g. durable.replay for durable/, are not nodes).
    Imports inside functions and under ``if TYPE_CHECKING:`` count like any other."""
    modules = module_files(root, package)
    graph: dict[str, dict[str, list[ImportRef]]] = {m: {} for m in modules}
    for ref in iter_imports(root, package):
        for target in _graph_targets(ref, modules):
            graph[ref.importer].setdefault(target, []).append(ref)
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _shortest_path(
    graph: dict[str, set[str]], start: str, goal: str, inside: set[str]
) -> list[str]:
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = [v]
            while (prev := came_from[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        for w in sorted(graph[v] & inside):
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no path {start} -> {goal} inside a strongly connected component")


def find_cycles(root: Path, package: str) -> list[tuple[str, ...]]:
    """Import cycles among the modules of ``root``, each closed (``(a, b, a)``).

    For every edge ``u -> v`` inside a strongly connected component (more than one module, or
    a module importing itself) the shortest way back ``v -> ... -> u`` makes one cycle, so
    every import on some cycle shows up in at least one listed cycle."""
    graph = {m: set(targets) for m, targets in import_graph(root, package).items()}
    cycles = set()
    for component in _strongly_connected(graph):
        members = set(component)
        for u in component:
            for v in graph[u] & members:
                nodes = [u, *_shortest_path(graph, v, u, members)][:-1]
                first = nodes.index(min(nodes))
                nodes = nodes[first:] + nodes[:first]
                cycles.add((*nodes, nodes[0]))
    return sorted(cycles, key=lambda c: (len(c), c))


def describe_cycles(root: Path, package: str, cycles: list[tuple[str, ...]]) -> str:
    graph = import_graph(root, package)
    edges = sorted({(c[i], c[i + 1]) for c in cycles for i in range(len(c) - 1)})
    lines = [f"{len(cycles)} import cycle(s) among the modules of {root.name}/ ({package}):"]
    lines += [f"  {' -> '.join(cycle)}" for cycle in cycles]
    lines.append("the imports that make these cycles:")
    for u, v in edges:
        lines.append(f"  {u} -> {v}")
        lines += [f"    {ref.describe()}" for ref in graph[u][v]]
    return "\n".join(lines)


# -- 2. psycopg and SQL in durable/ --------------------------------------------------------


def psycopg_imports(root: Path, package: str = "durable") -> list[ImportRef]:
    """Imports of psycopg / psycopg_pool (or any of their submodules) outside the body of an
    ``if TYPE_CHECKING:`` block."""
    return [
        ref
        for ref in iter_imports(root, package)
        if not ref.level
        and ref.module is not None
        and ref.module.partition(".")[0] in PSYCOPG
        and not ref.type_checking
    ]


_SQL_START = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|LISTEN|NOTIFY)\s", re.IGNORECASE
)
_SQL_KEYWORD = re.compile(r"\b(FROM|INTO|SET|TABLE|WHERE|VALUES|RETURNING)\b", re.IGNORECASE)


def looks_like_sql(text: str) -> bool:
    """Starts (after whitespace) with a statement keyword, then has a typical clause keyword;
    ``LISTEN x`` / ``NOTIFY x`` need none."""
    start = _SQL_START.match(text)
    if start is None:
        return False
    return start.group(1).upper() in {"LISTEN", "NOTIFY"} or bool(
        _SQL_KEYWORD.search(text, start.end())
    )


@dataclass(frozen=True)
class Finding:
    where: str
    text: str
    sql: str | None = None  # the SQL-looking literal passed as the first argument

    def describe(self) -> str:
        return f"{self.where}: {self.text}" + (f"  [SQL: {self.sql!r}]" if self.sql else "")


def _string_value(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f"SELECT ... {x}": the literal parts
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def execute_calls(root: Path, package: str = "durable") -> list[Finding]:
    """Every call of a function or method named ``execute`` / ``executemany``, with the SQL
    when its first argument is a string literal that looks like a statement."""
    findings = []
    for path in module_files(root, package).values():
        display = path.relative_to(root.parent).as_posix()
        calls = [node for node in ast.walk(_parse(path)) if isinstance(node, ast.Call)]
        for node in sorted(calls, key=lambda call: (call.lineno, call.col_offset)):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else None
            )
            if name not in EXECUTE_METHODS:
                continue
            text = " ".join(ast.unparse(node).split())
            text = text if len(text) <= 120 else text[:117] + "..."
            value = _string_value(node.args[0]) if node.args else None
            sql = " ".join(value.split())[:80] if value and looks_like_sql(value) else None
            findings.append(Finding(f"{display}:{node.lineno}", text, sql))
    return findings


# -- 3. replay/: the standard library only -------------------------------------------------


def non_stdlib_imports(root: Path, package: str = "durable.replay") -> list[ImportRef]:
    """Imports that are neither of the standard library (``sys.stdlib_module_names``) nor
    relative within ``package``. ``if TYPE_CHECKING:`` is no excuse here."""
    bad = []
    for ref in iter_imports(root, package):
        if ref.level:
            ok = ref.module is not None and _within(ref.module, package)
        else:
            ok = ref.module is not None and ref.module.partition(".")[0] in sys.stdlib_module_names
        if not ok:
            bad.append(ref)
    return bad


# -- 4. store/: of the engine, only its errors and vocabulary ------------------------------


def store_violations(
    root: Path,
    package: str = "durable.store",
    allowed: tuple[str, ...] = STORE_MAY_IMPORT_OF_REPLAY,
) -> list[ImportRef]:
    """Imports of ``durable`` code (relative or absolute) other than the store's own modules
    and the ``allowed`` modules; the standard library and third-party packages are fine."""
    first_party = package.partition(".")[0]
    bad = []
    for ref in iter_imports(root, package):
        if not ref.level and ref.module is not None and not _within(ref.module, first_party):
            continue  # standard library or third party
        ok = ref.module is not None and (
            _within(ref.module, package) or any(_within(ref.module, a) for a in allowed)
        )
        if not ok:
            bad.append(ref)
    return bad


def _report(title: str, findings: Iterable[ImportRef | Finding]) -> str:
    return "\n".join([title, *(f"  {f.describe()}" for f in findings)])


# -- the guards on the real tree -----------------------------------------------------------


def test_no_import_cycle_in_durable() -> None:
    """No import cycle among the modules of durable/ (the package ``durable``, subpackages
    included). Imports inside functions and under ``if TYPE_CHECKING:`` count: they are
    dependencies too, and a lazy import only hides a cycle. Imports of durable.replay and
    durable.store (other folders) are not part of this graph."""
    cycles = find_cycles(DURABLE_DIR, "durable")
    if cycles:
        pytest.fail(describe_cycles(DURABLE_DIR, "durable", cycles), pytrace=False)


def test_durable_executes_no_sql_and_imports_no_psycopg() -> None:
    """durable/ reaches PostgreSQL only through durable.store, so:

    * no module imports psycopg or psycopg_pool (or a submodule), except in the body of an
      ``if TYPE_CHECKING:`` block (to type a connection a user hands in);
    * nothing calls a function or method named ``execute`` or ``executemany``, whatever the
      argument (a string of SQL, ``store.q("name")``, a ``sql.SQL``); when the first argument
      is a literal that looks like SQL it is shown. SQL-looking strings elsewhere (docstrings,
      help texts) are not inspected.
    """
    imports = psycopg_imports(DURABLE_DIR)
    calls = execute_calls(DURABLE_DIR)
    if imports or calls:
        parts = []
        if imports:
            parts.append(
                _report(
                    f"{len(imports)} import(s) of psycopg/psycopg_pool in durable/ outside "
                    "`if TYPE_CHECKING:` (only durable.store talks to PostgreSQL):",
                    imports,
                )
            )
        if calls:
            parts.append(
                _report(
                    f"{len(calls)} execute()/executemany() call(s) in durable/ "
                    "(SQL belongs in durable.store):",
                    calls,
                )
            )
        pytest.fail("\n".join(parts), pytrace=False)


def test_replay_imports_only_the_standard_library() -> None:
    """replay/ (durable.replay, the pure engine) imports only the standard library and its own
    modules (relative imports within replay/). Absolute ``durable...`` imports, relative
    imports that climb out of replay/ and third-party packages are violations, even under
    ``if TYPE_CHECKING:``."""
    bad = non_stdlib_imports(REPLAY_DIR)
    if bad:
        pytest.fail(
            _report(
                f"{len(bad)} import(s) in replay/ (durable.replay) of neither the standard "
                "library nor replay/ itself:",
                bad,
            ),
            pytrace=False,
        )


def test_store_imports_only_the_roots_of_replay() -> None:
    """store/ (durable.store) may import the standard library, third-party packages, its own
    modules and, of the engine, only durable.replay.errors and durable.replay.vocabulary
    (``from ..replay.errors import ...`` or absolute). Nothing of durable/ (``from .. import``,
    ``from .._codec``, ``durable._app``) and nothing else of replay (``from ..replay import``,
    ``from ..replay.engine import``). This is a rule on the source: at run time Python still
    runs replay/__init__.py before durable.replay.errors."""
    bad = store_violations(STORE_DIR)
    if bad:
        pytest.fail(
            _report(
                f"{len(bad)} import(s) in store/ (durable.store) of durable code other than "
                f"store/ itself and {' / '.join(STORE_MAY_IMPORT_OF_REPLAY)}:",
                bad,
            ),
            pytrace=False,
        )


# -- the guards fail when the rule is broken (synthetic trees) -----------------------------


def _tree(base: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path -> source) under ``base``; returns ``base``."""
    for name, source in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return base


def _statements(refs: Iterable[ImportRef]) -> set[str]:
    return {ref.statement for ref in refs}


def test_find_cycles_reports_a_two_module_cycle(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "pkg",
        {"__init__.py": "", "a.py": "from . import b\n", "b.py": "from .a import x\n"},
    )
    cycles = find_cycles(root, "pkg")
    assert cycles == [("pkg.a", "pkg.b", "pkg.a")]
    report = describe_cycles(root, "pkg", cycles)
    assert "  pkg.a -> pkg.b -> pkg.a" in report
    assert "pkg/a.py:1: from . import b" in report
    assert "pkg/b.py:1: from .a import x  [= pkg.a]" in report


def test_find_cycles_counts_type_checking_and_function_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from .b import B\n",
            "b.py": """\
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from .a import A
                """,
            "c.py": "from .d import D\n",
            "d.py": """\
                class D:
                    def make(self):
                        from .c import C
                        return C
                """,
        },
    )
    cycles = find_cycles(root, "pkg")
    assert cycles == [("pkg.a", "pkg.b", "pkg.a"), ("pkg.c", "pkg.d", "pkg.c")]
    report = describe_cycles(root, "pkg", cycles)
    assert "pkg/b.py:4: from .a import A  [= pkg.a; if TYPE_CHECKING]" in report
    assert "pkg/d.py:3: from .c import C  [= pkg.c; inside D.make]" in report


def test_find_cycles_follows_submodules_and_package_inits(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "pkg",
        {
            # `from . import VERSION` (not a submodule) reads the package's __init__
            "__init__.py": "from .a import f\nVERSION = 1\n",
            "a.py": "from . import VERSION\n",
            # `from .sub import mod`: an edge to pkg.sub and to the submodule pkg.sub.mod
            "b.py": "from .sub import mod\n",
            "sub/__init__.py": "",
            "sub/mod.py": "from ..b import thing\n",
            # `from .sub2 import name`: an edge to the package pkg.sub2 (its __init__)
            "c.py": "from .sub2 import name\n",
            "sub2/__init__.py": "from .. import c\n",
            # a nested package's __init__ imported from its own submodule
            "sub3/__init__.py": "from .x import y\n",
            "sub3/x.py": "from ..sub3 import z\n",
            # a module importing itself
            "d.py": "import pkg.d\n",
        },
    )
    assert find_cycles(root, "pkg") == [
        ("pkg.d", "pkg.d"),
        ("pkg", "pkg.a", "pkg"),
        ("pkg.b", "pkg.sub.mod", "pkg.b"),
        ("pkg.c", "pkg.sub2", "pkg.c"),
        ("pkg.sub3", "pkg.sub3.x", "pkg.sub3"),
    ]


def test_find_cycles_lists_every_edge_of_a_larger_component(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "from . import c\n",
            "c.py": "from . import a\nfrom . import b\n",
        },
    )
    assert find_cycles(root, "pkg") == [
        ("pkg.b", "pkg.c", "pkg.b"),
        ("pkg.a", "pkg.b", "pkg.c", "pkg.a"),
    ]


def test_find_cycles_ignores_other_folders_and_sibling_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "pkg",
        {
            "__init__.py": "from .a import f\n",
            # a sibling through the package is no edge to the package's __init__
            "a.py": """\
                import json
                import pkg.replay.errors
                from pkg.store import Store
                from . import b
                from .replay import Engine
                """,
            "b.py": "from .replay.errors import DurableError\n",
        },
    )
    assert find_cycles(root, "pkg") == []
    graph = import_graph(root, "pkg")
    assert {m: set(t) for m, t in graph.items()} == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": set(),
    }


def test_checkers_refuse_a_folder_that_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no __init__\.py"):
        find_cycles(tmp_path / "missing", "pkg")
    with pytest.raises(FileNotFoundError):
        store_violations(tmp_path)


def test_psycopg_imports_flags_runtime_imports_only(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "durable",
        {
            "__init__.py": "",
            "_a.py": """\
                from __future__ import annotations

                from typing import TYPE_CHECKING

                import psycopg

                if TYPE_CHECKING:
                    import psycopg
                    from psycopg_pool import ConnectionPool
                else:
                    import psycopg.rows
                """,
            "_b.py": """\
                import typing

                if typing.TYPE_CHECKING:
                    from psycopg.rows import TupleRow

                def connect():
                    from psycopg_pool import ConnectionPool
                    return ConnectionPool
                """,
            "_c.py": "import psycopgx\nfrom .psycopg import x\n",
        },
    )
    found = psycopg_imports(root)
    assert [ref.where for ref in found] == [
        "durable/_a.py:5",
        "durable/_a.py:11",
        "durable/_b.py:7",
    ]
    assert _statements(found) == {
        "import psycopg",
        "import psycopg.rows",
        "from psycopg_pool import ConnectionPool",
    }
    assert found[2].describe() == (
        "durable/_b.py:7: from psycopg_pool import ConnectionPool  [inside connect]"
    )


def test_execute_calls_flags_every_execute_call(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "durable",
        {
            "__init__.py": '"""SELECT id FROM runs WHERE a docstring is fine."""\n',
            "_a.py": """\
                QUERY = "SELECT id FROM runs WHERE status = 'done'"  # not passed to execute

                def f(conn, store, rows, worker):
                    conn.execute("  SELECT id FROM runs WHERE run_id = %s", (1,))
                    conn.cursor().executemany(store.q("insert"), rows)
                    worker._execute(rows)  # not execute
                    execute(f"UPDATE runs SET status = {rows}")
                """,
        },
    )
    found = execute_calls(root)
    assert [f.where for f in found] == ["durable/_a.py:4", "durable/_a.py:5", "durable/_a.py:7"]
    assert [f.sql for f in found] == [
        "SELECT id FROM runs WHERE run_id = %s",
        None,
        "UPDATE runs SET status = {}",
    ]
    assert found[1].describe() == (
        "durable/_a.py:5: conn.cursor().executemany(store.q('insert'), rows)"
    )


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("SELECT id FROM runs", True),
        ("\n  insert into runs (id) values (1)", True),
        ("UPDATE runs SET x = 1", True),
        ("DELETE FROM events WHERE seq < 3", True),
        ("WITH t AS (SELECT 1) SELECT * FROM t", True),
        ("CREATE TABLE t (x int)", True),
        ("LISTEN durable_runs", True),
        ("NOTIFY durable_runs", True),
        ("select the run to show", False),
        ("with a timeout of 5 s", False),
        ("SELECTED runs", False),
        ("run_id", False),
    ],
)
def test_looks_like_sql(text: str, sql: bool) -> None:
    assert looks_like_sql(text) is sql


def test_non_stdlib_imports_flags_what_is_not_the_standard_library(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "replay",
        {
            "__init__.py": "from .engine import Engine\nfrom . import errors\n",
            "errors.py": "from __future__ import annotations\n",
            "engine.py": """\
                from __future__ import annotations

                import json
                import os.path
                from collections.abc import Callable
                from typing import TYPE_CHECKING

                from . import errors
                from .errors import DurableError

                import requests
                from durable._app import App
                from .._codec import Codec
                from ..store import Store

                if TYPE_CHECKING:
                    import psycopg
                """,
        },
    )
    found = non_stdlib_imports(root, "durable.replay")
    assert _statements(found) == {
        "import requests",
        "from durable._app import App",
        "from .._codec import Codec",
        "from ..store import Store",
        "import psycopg",
    }
    described = {ref.describe() for ref in found}
    assert "replay/engine.py:13: from .._codec import Codec  [= durable._codec]" in described
    assert "replay/engine.py:17: import psycopg  [if TYPE_CHECKING]" in described


def test_store_violations_flags_durable_and_replay_beyond_errors_and_vocabulary(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path / "store",
        {
            "__init__.py": "from ._a import Store\n",
            "_b.py": "",
            "_a.py": """\
                import json
                import psycopg, tenacity
                from psycopg_pool import ConnectionPool

                import durable.replay.errors
                from durable.replay.vocabulary import EventType
                from durable.store._b import y
                from ..replay.errors import DurableError
                from ..replay.vocabulary import RunStatus
                from . import _b
                from ._b import y

                from ..replay.engine import Engine
                from ..replay import Engine
                from ..replay import errors
                from durable.replay import Context
                from .. import _codec
                from .._codec import Codec
                from ..cli import main
                import durable._app
                import durable
                from ... import nothing

                def lazy():
                    from ..replay.context import Context
                """,
        },
    )
    found = store_violations(root, "durable.store")
    assert _statements(found) == {
        "from ..replay.engine import Engine",
        "from ..replay import Engine",
        "from ..replay import errors",
        "from durable.replay import Context",
        "from .. import _codec",
        "from .._codec import Codec",
        "from ..cli import main",
        "import durable._app",
        "import durable",
        "from ... import nothing",
        "from ..replay.context import Context",
    }
    described = {ref.describe() for ref in found}
    assert "store/_a.py:13: from ..replay.engine import Engine  [= durable.replay.engine]" in (
        described
    )
    assert "store/_a.py:22: from ... import nothing  [beyond the top-level package]" in described
