"""Stack frames as profiles record them: function, file and line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import CodeType, FrameType


@dataclass(frozen=True, slots=True)
class Frame:
    """One line of one function; ``start_line`` is the function's first line."""

    function: str
    filename: str
    line: int
    start_line: int = 0

    @property
    def label(self) -> str:
        """``function (file.py:line)``, the text shown by folded stacks and flame graphs."""
        return f"{self.function} ({os.path.basename(self.filename)}:{self.line})"


RawStack = tuple[tuple[CodeType, int], ...]
"""A stack as the sampler grabs it, leaf first: code objects and line numbers."""


def raw_stack(frame: FrameType | None) -> RawStack:
    """The stack ending at ``frame``, leaf first, cheap to take and to hash."""
    stack = []
    while frame is not None:
        stack.append((frame.f_code, frame.f_lineno or 0))
        frame = frame.f_back
    return tuple(stack)


def frame_stack(frame: FrameType | None) -> tuple[Frame, ...]:
    """The stack ending at ``frame`` as `Frame` values, root first."""
    return resolve(raw_stack(frame))


def frame_at(frame: FrameType) -> Frame:
    """Where ``frame`` is now, without its callers."""
    return _frame(frame.f_code, frame.f_lineno or 0)


def resolve(stack: RawStack) -> tuple[Frame, ...]:
    """Turn a leaf-first `RawStack` into `Frame` values, root first."""
    return tuple(_frame(code, line) for code, line in reversed(stack))


def _frame(code: CodeType, line: int) -> Frame:
    return Frame(code.co_qualname, code.co_filename, line, code.co_firstlineno)
