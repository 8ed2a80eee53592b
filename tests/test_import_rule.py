"""clue's import rule (stated in clue/__init__.py), checked on every module's source.

A module imports another clue package only through its ``__init__``
(``from clue.log import STATE``), or from one of the shared internal modules
directly under clue/ (``clue._payload``); never a submodule of another package
and never an underscored name of one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

CLUE = Path(__file__).resolve().parent.parent / "clue"


def _module_name(path: Path) -> str:
    parts = path.relative_to(CLUE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """The package ``module`` belongs to: ``clue.log`` for ``clue.log.state``; a module
    directly under clue/ (``clue.asgi``, ``clue._payload``) is a package of its own."""
    return ".".join(module.split(".")[:2])


def _is_module(dotted: str) -> bool:
    path = CLUE.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, module, name) of every import of clue in ``path``; name None for ``import m``."""
    module = _module_name(path)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if _is_module(f"{base}.{alias.name}"):  # from clue import log: the module
                    yield node.lineno, f"{base}.{alias.name}", None
                else:
                    yield node.lineno, base, alias.name


def _breaks(importer: str, module: str, name: str | None) -> str | None:
    """Why importing ``name`` from ``module`` in ``importer`` breaks the rule, or None."""
    if module != "clue" and not module.startswith("clue."):
        return None
    package = _package(module)
    if package == _package(importer) or module == "clue":
        return None
    if module != package:
        return f"{module} is inside {package}: import {name or 'what it needs'} from {package}"
    if name is not None and name.startswith("_"):
        return f"{name} is private to {package}"
    return None


def violations() -> list[str]:
    found = []
    for path in sorted(CLUE.rglob("*.py")):
        importer = _module_name(path)
        for line, module, name in _imports(path):
            why = _breaks(importer, module, name)
            if why is not None:
                found.append(f"{path.relative_to(CLUE.parent)}:{line}: {why}")
    return found


def test_no_module_imports_another_packages_insides() -> None:
    assert violations() == []


def test_the_checker_sees_each_kind_of_breach() -> None:
    assert _breaks("clue.asgi", "clue.log.state", "STATE") == (
        "clue.log.state is inside clue.log: import STATE from clue.log"
    )
    assert _breaks("clue.grpc._metrics", "clue.telemetry", "_series") == (
        "_series is private to clue.telemetry"
    )
    assert _breaks("clue.nats", "clue.messaging._headers", None) == (
        "clue.messaging._headers is inside clue.messaging: import what it needs from clue.messaging"
    )
    assert _breaks("clue.log.pipeline", "clue.log.state", "_x") is None  # its own package
    assert _breaks("clue.grpc._logging", "clue._request_id", "HEADER") is None  # shared
    assert _breaks("clue.asgi", "clue.log", "STATE") is None  # through the door
    assert _breaks("clue.asgi", "opentelemetry.trace", "_x") is None  # not clue's
