"""Dumps of every thread's stack and every asyncio task's coroutine stack."""

from __future__ import annotations

import asyncio
import contextlib
import linecache
import sys
import threading
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from clue.debug.pprof.frames import Frame, frame_at, frame_stack


@dataclass(frozen=True, slots=True)
class ThreadDump:
    """One thread and its stack, root first (most recent call last)."""

    name: str
    ident: int
    native_id: int | None
    daemon: bool
    stack: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class TaskDump:
    """One asyncio task: running or waiting, where, and its coroutine chain, outermost first.

    ``awaiting`` describes what the innermost coroutine waits on (a future,
    a sleep), if anything.
    """

    name: str
    coroutine: str
    state: str
    loop: str
    thread: str
    stack: tuple[Frame, ...]
    awaiting: str | None


def threads() -> list[ThreadDump]:
    """Every Python thread of the process, main thread first."""
    known = {t.ident: t for t in threading.enumerate()}
    dumps = []
    for ident, frame in sys._current_frames().items():
        thread = known.get(ident)
        dumps.append(
            ThreadDump(
                name=thread.name if thread else f"thread-{ident}",
                ident=ident,
                native_id=thread.native_id if thread else None,
                daemon=thread.daemon if thread else True,
                stack=frame_stack(frame),
            )
        )
    main = threading.main_thread().ident
    dumps.sort(key=lambda dump: (dump.ident != main, dump.name))
    return dumps


def running_loops() -> dict[asyncio.AbstractEventLoop, str]:
    """The event loops running in this process, found on the threads' stacks, by thread name.

    The caller's own running loop comes first when there is one.
    """
    loops: dict[asyncio.AbstractEventLoop, str] = {}
    with contextlib.suppress(RuntimeError):
        loops[asyncio.get_running_loop()] = threading.current_thread().name
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        for each in _outward(frame):
            candidate = each.f_locals.get("self") if each.f_code.co_name == "run_forever" else None
            if isinstance(candidate, asyncio.AbstractEventLoop) and candidate not in loops:
                loops[candidate] = names.get(ident, f"thread-{ident}")
    return loops


def tasks() -> list[TaskDump]:
    """Every unfinished task of every running event loop (see `running_loops`)."""
    dumps = []
    for loop, thread in running_loops().items():
        for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
            dumps.append(_task_dump(task, loop, thread))
    return dumps


def threads_text(dumps: list[ThreadDump]) -> str:
    """Threads as Python prints tracebacks, with the source lines."""
    blocks = []
    for dump in dumps:
        daemon = ", daemon" if dump.daemon else ""
        head = f'Thread "{dump.name}" (ident {dump.ident}, native id {dump.native_id}{daemon}):'
        blocks.append(head + "\n" + _stack_text(dump.stack))
    return f"{len(dumps)} threads\n\n" + "\n".join(blocks)


def tasks_text(dumps: list[TaskDump]) -> str:
    """Tasks with their coroutine chains, outermost coroutine first."""
    blocks = []
    for dump in dumps:
        head = (
            f'Task "{dump.name}" {dump.state}, coroutine {dump.coroutine} '
            f'(loop {dump.loop} in thread "{dump.thread}"):'
        )
        tail = f"  awaiting {dump.awaiting}\n" if dump.awaiting else ""
        blocks.append(head + "\n" + _stack_text(dump.stack) + tail)
    return f"{len(dumps)} tasks\n\n" + "\n".join(blocks)


def as_json(dumps: list[ThreadDump] | list[TaskDump]) -> list[dict[str, Any]]:
    """Dumps as JSON-ready dicts; stack frames are ``{function, filename, line, start_line}``."""
    return [asdict(dump) for dump in dumps]


def _task_dump(task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop, thread: str) -> TaskDump:
    coroutine = task.get_coro()
    frames: list[Frame] = []
    awaiting: str | None = None
    current: Any = coroutine
    while current is not None:
        frame = _frame_of(current)
        if frame is None:  # a future (or its iterator), the end of the chain
            waiter = getattr(task, "_fut_waiter", None)  # the Future itself, when asyncio has it
            awaiting = _short_repr(current if waiter is None else waiter)
            break
        frames.append(frame_at(frame))
        current = getattr(current, "cr_await", None) or getattr(current, "gi_yieldfrom", None)
    state = "running" if asyncio.current_task(loop) is task else "waiting"
    return TaskDump(
        name=task.get_name(),
        coroutine=getattr(coroutine, "__qualname__", type(coroutine).__name__),
        state=state,
        loop=f"{type(loop).__name__}@{id(loop):#x}",
        thread=thread,
        stack=tuple(frames),
        awaiting=awaiting,
    )


def _frame_of(awaitable: Any) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, attribute, None)
        if isinstance(frame, FrameType):
            return frame
    return None


def _outward(frame: FrameType | None) -> list[FrameType]:
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    return chain


def _stack_text(stack: tuple[Frame, ...]) -> str:
    lines = []
    for frame in stack:
        lines.append(f'  File "{frame.filename}", line {frame.line}, in {frame.function}\n')
        source = linecache.getline(frame.filename, frame.line).strip()
        if source:
            lines.append(f"    {source}\n")
    return "".join(lines)


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
