"""The job package's modules import each other without a cycle: each layer of code can be read, and loaded, on its own.

Every import counts, also one inside a function (a deferred import still makes the two modules depend on each other).
"""

from __future__ import annotations

import ast
from pathlib import Path

import medallion

PACKAGE = Path(medallion.__file__).resolve().parent


def imports_of(source: str, module: str) -> set[str]:
    """The medallion modules a module's source imports (by module name, without the package prefix)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 or base == "medallion" or base.startswith("medallion."):
                base = base.removeprefix("medallion").lstrip(".")
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import a, b
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("medallion."))
    return (found & modules) - {module}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path.read_text(encoding="utf-8"), path.stem) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_job_package_has_no_import_cycle():
    graph = import_graph()
    assert {"config", "lakehouse", "ops", "secrets", "governance"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = "def f():\n    from .config import Settings\n    from . import governance, ops\n    import medallion.cli\n"
    assert imports_of(source, "probe") == {"config", "governance", "ops", "cli"}


# What a Spark Connect client does not have (Databricks serverless): the JVM behind a classic session, RDDs, and
# delta-spark's Python DeltaTable, which calls into that JVM.
JVM_ONLY_ATTRIBUTES = {"sparkContext", "_jvm", "_jsc", "_sc", "rdd"}
JVM_ONLY_MODULES = {"delta.tables", "py4j"}


def jvm_uses(source: str) -> list[str]:
    """Where a module's source reaches for something only a classic session has: `line: name`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in JVM_ONLY_ATTRIBUTES:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module in JVM_ONLY_MODULES or node.module == "py4j"):
            found.append(f"{node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name in JVM_ONLY_MODULES]
    return found


def test_the_jobs_use_nothing_a_spark_connect_client_lacks():
    uses = {p.name: jvm_uses(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.glob("*.py"))}
    assert {name: found for name, found in uses.items() if found} == {}


def test_the_jvm_check_finds_each_kind_of_use():
    source = (
        "from delta.tables import DeltaTable\nimport py4j\n"
        "spark.sparkContext.setLogLevel('x')\nspark._jvm.x\nspark._jsc.y\ndf.rdd.map(f)\nspark._sc\n"
        "df.sparkSession.sql('x')\n"  # what the jobs use instead: fine
    )
    assert sorted(jvm_uses(source)) == [
        "1: from delta.tables",
        "2: import py4j",
        "3: .sparkContext",
        "4: ._jvm",
        "5: ._jsc",
        "6: .rdd",
        "7: ._sc",
    ]
