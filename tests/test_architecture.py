"""docs/architecture.md stays true: every module of clue/ is on the map, and the import
rules it states hold in the sources (parsed with ``ast``, nothing imported)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUE = ROOT / "clue"
PAGE = ROOT / "docs" / "architecture.md"

#: OpenTelemetry's logs signal: its published API and SDK, under underscore names.
LOGS_SIGNAL_PARTS = {"_logs", "_log_exporter"}
INCUBATING = "opentelemetry.semconv._incubating"
SEMCONV_MODULE = "clue/_semconv.py"
INTERNALS_MODULE = "clue/_otel_internals.py"
#: in the dev extra only: the benchmarks' peers, never imported by clue
DEV_ONLY = (
    "opentelemetry.instrumentation.grpc",
    "opentelemetry.instrumentation.asgi",
    "opentelemetry.instrumentation.wsgi",
)


@dataclass(frozen=True)
class Import:
    path: str  # the importer, relative to the repository: clue/log/api.py
    line: int
    module: str  # what is imported: a module, or the module a name comes from
    name: str | None  # the imported name for ``from m import name``, else None
    at_import_time: bool  # False inside a function or under ``if TYPE_CHECKING:``


def module_files() -> list[Path]:
    return sorted(CLUE.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def unit(module: str) -> str:
    """``clue.log`` for ``clue.log.state``; a module directly under clue/ is its own unit."""
    return ".".join(module.split(".")[:2])


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def imports(path: Path) -> tuple[Import, ...]:
    """Every import statement of ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    module = dotted(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    relative = str(path.relative_to(ROOT))
    found: list[Import] = []

    def visit(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            at_import_time = False
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, at_import_time)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(relative, node.lineno, alias.name, None, at_import_time))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if base.split(".")[0] == "clue" and is_module(full):  # from clue import log
                    found.append(Import(relative, node.lineno, full, None, at_import_time))
                else:
                    found.append(Import(relative, node.lineno, base, alias.name, at_import_time))
        for child in ast.iter_child_nodes(node):
            visit(child, at_import_time)

    visit(tree, True)
    return tuple(found)


def all_imports() -> Iterator[Import]:
    for path in module_files():
        yield from imports(path)


def page() -> str:
    return PAGE.read_text()


def layers() -> tuple[dict[str, int], set[tuple[str, str]]]:
    """The page's layer of each unit, and its allowed upward imports."""
    match = re.search(r"<!-- layers: .*? -->\n```text\n(.*?)```", page(), re.S)
    assert match is not None, "docs/architecture.md lost its layers block"
    rank: dict[str, int] = {}
    up: set[tuple[str, str]] = set()
    for line in match.group(1).splitlines():
        first, *rest = line.split()
        if first == "up":
            importer, arrow, imported = rest
            assert arrow == "->", line
            up.add((importer, imported))
        else:
            for name in rest:
                assert name not in rank, f"{name} is in two layers"
                rank[name] = int(first)
    return rank, up


# --- the map -------------------------------------------------------------------------------


def test_every_module_of_clue_is_on_the_map() -> None:
    text = page()
    missing = [
        str(path.relative_to(ROOT))
        for path in module_files()
        if f"`{path.relative_to(ROOT)}`" not in text
    ]
    assert missing == [], "add them to docs/architecture.md's Layout"


def test_every_module_on_the_map_exists() -> None:
    named = set(re.findall(r"`(clue/[\w/]+\.pyi?)`", page()))
    assert named, "the Layout names modules as `clue/.../x.py`"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []


def test_every_unit_has_a_layer_and_every_layer_names_real_units() -> None:
    rank, up = layers()
    units = {unit(dotted(path)) for path in module_files()}
    assert units == set(rank)
    assert {name for pair in up for name in pair} <= units


# --- the import rules ----------------------------------------------------------------------


def test_units_import_only_lower_layers() -> None:
    rank, up = layers()
    wrong = []
    for imp in all_imports():
        if imp.module.split(".")[0] != "clue":
            continue
        importer, imported = unit(dotted(ROOT / imp.path)), unit(imp.module)
        if importer == imported or rank[importer] > rank[imported]:
            continue
        if (importer, imported) in up and not imp.at_import_time:
            continue  # stated on the page: made inside a function, when first needed
        wrong.append(
            f"{imp.path}:{imp.line}: {importer} (layer {rank[importer]}) imports "
            f"{imported} (layer {rank[imported]})"
        )
    assert wrong == []


def test_no_import_cycle_among_clues_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in module_files():
        targets = set()
        for imp in imports(path):
            if imp.at_import_time and imp.module.split(".")[0] == "clue":
                targets.add(imp.module)
        graph[dotted(path)] = targets
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path_: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path_.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path_[path_.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt)
        path_.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == []


def test_nothing_imports_the_top_level_package() -> None:
    found = [f"{i.path}:{i.line}" for i in all_imports() if i.module == "clue"]
    assert found == []


def otel_names_bound(path: Path) -> set[str]:
    """Names ``path`` binds to OpenTelemetry modules and objects by importing them."""
    names = set()
    for imp in imports(path):
        if imp.module.split(".")[0] != "opentelemetry":
            continue
        if imp.name is None:
            names.add(imp.module.split(".")[0])  # import opentelemetry.trace binds opentelemetry
        else:
            names.add(imp.name)
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in names:
                    names.add(alias.asname)
    return names


def private_otel_uses(path: Path) -> list[str]:
    """``path``'s imports of private OpenTelemetry names and ``._x`` reads on them."""
    where = str(path.relative_to(ROOT))
    found = []
    for imp in imports(path):
        parts = imp.module.split(".")
        if parts[0] != "opentelemetry":
            continue
        private = [p for p in parts if p.startswith("_") and p not in LOGS_SIGNAL_PARTS]
        if imp.module.startswith(INCUBATING + ".") or imp.module == INCUBATING:
            private = [p for p in private if p != "_incubating"]  # a rule of its own
        if private or (imp.name is not None and imp.name.startswith("_")):
            found.append(f"{where}:{imp.line}: {imp.module} {imp.name or ''}".rstrip())
    bound = otel_names_bound(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.endswith("_"):  # dunders and enum sunders
            continue
        root: ast.expr = node.value
        while isinstance(root, ast.Attribute | ast.Call):  # trace.get_tracer_provider()._x too
            root = root.value if isinstance(root, ast.Attribute) else root.func
        if isinstance(root, ast.Name) and root.id in bound:
            found.append(f"{where}:{node.lineno}: .{attr} on {root.id}")
    return found


def test_only_otel_internals_touches_opentelemetry_private_names() -> None:
    found = [
        use
        for path in module_files()
        if str(path.relative_to(ROOT)) != INTERNALS_MODULE
        for use in private_otel_uses(path)
    ]
    assert found == []


def test_the_private_name_check_sees_what_otel_internals_does() -> None:
    """The check above is not blind: it finds the wall's own private imports."""
    uses = private_otel_uses(ROOT / INTERNALS_MODULE)
    assert any("_agnosticcontextmanager" in use for use in uses), uses
    assert any("_Gauge" in use for use in uses), uses


def test_one_module_imports_the_incubating_semantic_conventions() -> None:
    importers = {
        imp.path
        for imp in all_imports()
        if imp.module == INCUBATING or imp.module.startswith(INCUBATING + ".")
    }
    assert importers <= {SEMCONV_MODULE}
    assert f"`{SEMCONV_MODULE}`" in page()


def test_clue_imports_no_dev_only_instrumentation() -> None:
    found = [
        f"{i.path}:{i.line}: {i.module}" for i in all_imports() if i.module.startswith(DEV_ONLY)
    ]
    assert found == [], "pyproject.toml has these in the dev extra only"
