"""Function names for bare (file, line) pairs, as tracemalloc reports frames."""

from __future__ import annotations

import ast
import bisect
import functools
import linecache
import os

_Scopes = tuple[list[int], list[tuple[int, int, str]]]


def function_at(filename: str, line: int) -> tuple[str, int]:
    """The qualified name and first line of the function holding ``filename:line``.

    Module-level code is ``<module>``; a file whose source cannot be read or
    parsed gives ``file.py:line`` and 0.
    """
    scopes = _scopes(filename)
    if scopes is None:
        return f"{os.path.basename(filename)}:{line}", 0
    starts, spans = scopes
    # Defs nest without overlapping, so the innermost one holding the line is
    # the latest-starting def that has not ended before it.
    for index in range(bisect.bisect_right(starts, line) - 1, -1, -1):
        start, end, name = spans[index]
        if line <= end:
            return name, start
    return "<module>", 1


@functools.lru_cache(maxsize=1024)
def _scopes(filename: str) -> _Scopes | None:
    """Every def and class of the file: start lines (sorted) and (start, end, qualname)."""
    source = "".join(linecache.getlines(filename))
    if not source:
        return None
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                inner = ".<locals>." if not isinstance(child, ast.ClassDef) else "."
                visit(child, name + inner)
            else:
                visit(child, prefix)

    visit(tree, "")
    spans.sort()
    return [start for start, _, _ in spans], spans
