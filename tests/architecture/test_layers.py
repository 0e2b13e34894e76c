"""
Imports go one way: every module of clickhouse_outbox is parsed (imports inside functions
included, since a deferred import is still a dependency), and the test fails on an import
cycle between modules, or on a module importing one of a layer above its own.

LAYERS is the one table of layers, bottom first; docs/architecture.rst shows it (a test
checks that the page holds the table as `layer_table()` writes it).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "clickhouse_outbox"
ARCHITECTURE_PAGE = ROOT / "docs" / "architecture.rst"

#: (layer, why, module prefixes), bottom first. A module belongs to the layer of its longest
#: prefix ("" is the package's own __init__); it may import its own layer and those below.
LAYERS = (
    ("foundation", "settings, their reads, words, the database's clock and lock retries, the beat's names",
     ("", "settings.table", "settings.docs", "conf", "text", "db", "schedule")),
    ("clickhouse", "the destination: its tables, errors, backends, schema, cluster",
     ("clickhouse",)),
    ("sources", "where subjects are read from: course sources, platform models, keys",
     ("sources",)),
    ("serializers", "what was read as JSONEachRow lines in the contract's formats, and payloads",
     ("serializers",)),
    ("registry", "the producers by name and their interface (looked up, never imported, below)",
     ("outbox.registry",)),
    ("models", "snapshots, entries, batches, dump jobs, verdicts, and their migrations",
     ("models", "migrations")),
    ("outbox", "the pipeline: snapshots, enqueue, deletes, claim, send, finalise, drain, purge",
     ("outbox",)),
    ("producers", "one module per producer, registering itself",
     ("producers",)),
    ("dumps", "dump jobs: start, run, dispatch",
     ("dumps",)),
    ("operations", "operators' reports and actions: status, delivery state, requeue",
     ("operations",)),
    ("reconcile", "verification, repair and the sweep, against what ClickHouse holds",
     ("reconcile",)),
    ("monitoring", "the outbox's readings for the sites' monitoring: metrics, attributes, health",
     ("monitoring",)),
    ("entry points", "what Django, celery, Tutor, operators and the tests call",
     ("admin", "management", "tasks", "receivers", "checks", "apps", "urls", "settings", "tutor", "testing")),
)

#: Imports known to go the wrong way, (importer, imported) relative to the package, each
#: left out of both checks. Empty: the dump-job runner has a table of job actions that
#: reconcile fills in (`reconcile.jobs`), so dumps never imports reconcile. An entry whose
#: import is gone fails too, so the list only shrinks.
ALLOWED = set()


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules():
    """{dotted name: path} of every module of the package."""
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imported_names(path, module):
    """(dotted name, line) of everything `module` imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*base, node.module] if node.module else base)
            else:
                base = node.module
            for alias in node.names:  # `from package import module`: the module; `import name`: its module
                yield f"{base}.{alias.name}", node.lineno


def import_graph():
    """
    {module: {imported module: line}}, modules relative to the package ("" its __init__). A
    package's __init__ that Python runs on the way to a submodule is not counted: ours hold
    docstrings and re-exports of their own submodules only.
    """
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        edges = graph.setdefault(relative(module), {})
        for name, line in imported_names(path, module):
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = name
                while target not in modules:  # a name imported from a module: the module
                    target = target.rpartition(".")[0]
                if target != module:
                    edges.setdefault(relative(target), line)
    return graph


def relative(module):
    return module.removeprefix(PACKAGE).removeprefix(".")


def layer_of(module):
    """The index in LAYERS of `module`'s layer (its longest prefix), or None."""
    best = None
    for index, (_, _, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return None if best is None else best[0]


def strongly_connected(graph):
    """The graph's cycles: its strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def without_allowed(graph):
    return {module: {target: line for target, line in edges.items() if (module, target) not in ALLOWED}
            for module, edges in graph.items()}


def shown(module):
    return f"{PACKAGE}.{module}" if module else PACKAGE


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_sees_deferred_and_relative_imports(graph):
    """The parser finds what the checks rely on: an import inside a function, a submodule by `from`."""
    assert "outbox.registry" in graph["models"]  # `from clickhouse_outbox.outbox import registry`
    assert "outbox.deletes" in graph["outbox.requested"]  # inside fill_rows
    assert "admin.batches" in graph["admin"]  # `from clickhouse_outbox.admin import batches, ...`


def test_every_module_has_a_layer(graph):
    unplaced = sorted(shown(module) for module in graph if layer_of(module) is None)
    assert not unplaced, f"modules in no layer of LAYERS (add them to the table and to {ARCHITECTURE_PAGE.name}): {unplaced}"


def test_no_import_cycle(graph):
    cycles = strongly_connected(without_allowed(graph))
    described = [
        " -> ".join(shown(module) for module in cycle) + ": "
        + ", ".join(f"{shown(a)}:{graph[a][b]} imports {shown(b)}" for a in cycle for b in graph[a] if b in cycle)
        for cycle in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_no_import_from_a_layer_above(graph):
    upward = [
        f"{shown(module)}:{line} ({LAYERS[layer_of(module)][0]}) imports {shown(target)} "
        f"({LAYERS[layer_of(target)][0]})"
        for module, edges in sorted(without_allowed(graph).items())
        for target, line in edges.items()
        if layer_of(module) is not None and layer_of(target) is not None and layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_every_allowed_import_still_exists(graph):
    """An allowance whose import is gone is taken out of ALLOWED, so the list only shrinks."""
    gone = sorted((a, b) for a, b in ALLOWED if b not in graph.get(a, {}))
    assert not gone, f"no longer imported, take them out of ALLOWED: {gone}"


def layer_table():
    """LAYERS as the RST table docs/architecture.rst shows."""
    rows = [".. list-table::", "   :header-rows: 1", "", "   * - Layer", "     - Modules", "     - What"]
    for name, why, prefixes in reversed(LAYERS):
        modules = ", ".join(f"``{prefix}``" if prefix else "``__init__``" for prefix in prefixes)
        rows += [f"   * - {name}", f"     - {modules}", f"     - {why}"]
    return "\n".join(rows) + "\n"


def test_the_architecture_page_shows_the_layer_table():
    assert layer_table() in ARCHITECTURE_PAGE.read_text(), (
        f"{ARCHITECTURE_PAGE} does not show LAYERS as they are; put this table in it:\n\n{layer_table()}"
    )
