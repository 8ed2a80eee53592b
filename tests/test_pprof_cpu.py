"""CPU profiles over real HTTP: pprof decoded with clue's profile.proto and by ``go tool pprof``,
folded stacks, speedscope JSON, the flame graph page, concurrency and disconnects."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_pprof_support import decode, flat, pprof_app, running, serve, spin_hot_loop

HOT = "spin_hot_loop"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(pprof_app()) as url:
        yield url


@pytest.fixture
def hot_thread() -> Iterator[threading.Thread]:
    with running(spin_hot_loop, "hot-worker") as thread:
        yield thread


def get_profile(base_url: str, query: str) -> httpx.Response:
    response = httpx.get(f"{base_url}/debug/pprof/profile?{query}", timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_pprof_profile_puts_the_hot_function_on_top(
    base_url: str, hot_thread: threading.Thread
) -> None:
    response = get_profile(base_url, "seconds=1")
    assert response.headers["content-type"] == "application/octet-stream"
    assert f"profile-{os.getpid()}.pb.gz" in response.headers["content-disposition"]
    profile = decode(response.content)

    strings = profile.string_table
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("samples", "count"),
        ("cpu", "nanoseconds"),
    ]
    assert (strings[profile.period_type.type], strings[profile.period_type.unit]) == (
        "cpu",
        "nanoseconds",
    )
    assert profile.period == 10_000_000  # 100 Hz
    assert strings[profile.default_sample_type] == "cpu"
    assert 0.9e9 <= profile.duration_nanos < 5e9
    assert abs(profile.time_nanos - time.time_ns()) < 60e9
    comments = [strings[index] for index in profile.comment]
    own = [
        re.fullmatch(r"sampler: thread mode, (\d+) ticks, ([\d.]+) ms of CPU in its own thread", c)
        for c in comments
    ]
    (found,) = [m for m in own if m]
    ticks = int(found.group(1))
    # Wall-clock ticks: up to 100 in the second, fewer when a busy machine starves the sampler
    # (a late tick is skipped, never made up for by a burst).
    assert 5 <= ticks <= profile.duration_nanos / 1e7 + 2
    assert 0 < float(found.group(2)) < 500  # what sampling cost
    # uvicorn serves from a thread here, so mode=auto could not take SIGPROF

    cpu = flat(profile, "cpu")
    samples = flat(profile, "samples")
    assert max(cpu, key=lambda name: cpu[name]) == HOT
    assert max(samples, key=lambda name: samples[name]) == HOT
    assert ticks / 2 <= samples[HOT] <= ticks  # the hot thread, once a tick, busy on most

    hot = next(f for f in profile.function if strings[f.name] == HOT)
    assert strings[hot.filename].endswith("test_pprof_support.py")
    lines = {loc.line[0].line for loc in profile.location if loc.line[0].function_id == hot.id}
    assert lines and all(hot.start_line < line <= hot.start_line + 6 for line in lines)

    labels = {
        strings[label.str]
        for sample in profile.sample
        for label in sample.label
        if strings[label.key] == "thread"
    }
    assert "hot-worker" in labels
    # Idle threads stay out: uvicorn's event loop waits in its selector meanwhile.
    assert not [name for name in samples if name.endswith("Selector.select")]


def test_idle_include_keeps_waiting_threads(base_url: str, hot_thread: threading.Thread) -> None:
    profile = decode(get_profile(base_url, "seconds=1&idle=include").content)
    strings = profile.string_table
    samples = flat(profile, "samples")
    selector = next(name for name in samples if name.endswith("Selector.select"))
    assert HOT in samples  # uvicorn's event loop, parked in its selector, is there too
    cpu = flat(profile, "cpu")
    assert cpu[HOT] > 10 * cpu[selector]  # idle samples carry almost no CPU time
    threads = {strings[lab.str] for s in profile.sample for lab in s.label}
    assert {"uvicorn", "hot-worker"} <= threads


@pytest.mark.skipif(shutil.which("go") is None, reason="needs golang-go (.ci/run installs it)")
def test_go_tool_pprof_reads_the_profile_from_the_url(
    base_url: str, hot_thread: threading.Thread, tmp_path: Path
) -> None:
    env = {**os.environ, "PPROF_TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["go", "tool", "pprof", "-top", "-seconds", "1", f"{base_url}/debug/pprof/profile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().endswith(HOT)]
    assert rows, result.stdout + result.stderr
    header = result.stdout.index("flat  flat%")
    first_row = result.stdout[header:].splitlines()[1]
    assert first_row.split()[-1] == HOT, result.stdout
    assert "Type: cpu" in result.stdout


def test_collapsed_stacks(base_url: str, hot_thread: threading.Thread) -> None:
    response = get_profile(base_url, "seconds=1&format=collapsed")
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    parsed = [re.fullmatch(r"(.+) (\d+)", line) for line in lines]
    assert lines and all(parsed)
    stacks = [(m.group(1).split(";"), int(m.group(2))) for m in parsed if m]
    top_frames, _ = stacks[0]  # busiest first
    assert top_frames[0] == "hot-worker"
    assert top_frames[-1].startswith(f"{HOT} (test_pprof_support.py:")
    assert [n for _, n in stacks] == sorted((n for _, n in stacks), reverse=True)


def test_speedscope_json(base_url: str, hot_thread: threading.Thread) -> None:
    response = get_profile(base_url, "seconds=1&format=speedscope")
    assert response.headers["content-type"] == "application/json"
    document = json.loads(response.content)
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = document["shared"]["frames"]
    first = document["profiles"][document["activeProfileIndex"]]
    assert first["name"] == "hot-worker"
    assert first["type"] == "sampled" and first["unit"] == "nanoseconds"
    assert len(first["samples"]) == len(first["weights"])
    assert first["endValue"] == sum(first["weights"])
    heaviest = first["samples"][first["weights"].index(max(first["weights"]))]
    leaf = frames[heaviest[-1]]
    assert leaf["name"] == HOT and leaf["file"].endswith("test_pprof_support.py")
    assert frames[heaviest[0]]["name"] == "Thread._bootstrap"  # root first


def test_flamegraph_is_a_self_contained_page(base_url: str, hot_thread: threading.Thread) -> None:
    response = get_profile(base_url, "seconds=1&format=flamegraph")
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script src" not in page and "<link" not in page and "http://" not in page
    pattern = r'<script id="profile-data" type="application/json">(.*?)</script>'
    data = re.search(pattern, page, re.S)
    assert data
    root = json.loads(data.group(1))
    thread = next(child for child in root["c"] if child["n"] == "thread hot-worker")
    names = []
    node = thread
    while node["c"]:
        node = node["c"][0]
        names.append(node["n"])
    assert HOT in names
    assert root["v"] == sum(child["v"] for child in root["c"])


def sampling() -> bool:
    return any(t.name == "clue-cpu-sampler" for t in threading.enumerate())


def test_a_second_concurrent_profile_gets_409_and_serving_goes_on(base_url: str) -> None:
    finished: list[str] = []

    def first() -> None:
        response = httpx.get(f"{base_url}/debug/pprof/profile?seconds=2", timeout=30)
        finished.append(f"profile {response.status_code}")

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 10
    while not sampling() and time.monotonic() < deadline:  # the first one began
        time.sleep(0.01)
    second = httpx.get(f"{base_url}/debug/pprof/profile?seconds=1", timeout=30)
    assert second.status_code == 409
    assert "already" in second.json()["error"]
    ping = httpx.get(f"{base_url}/ping", timeout=5)  # the loop is not blocked meanwhile
    finished.append(f"ping {ping.status_code}")
    thread.join(30)
    assert finished == ["ping 200", "profile 200"]


def test_a_client_that_goes_away_frees_the_profiler(base_url: str) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{base_url}/debug/pprof/profile?seconds=300", timeout=0.5)
    deadline = time.monotonic() + 10
    status = 409
    while status == 409 and time.monotonic() < deadline:
        status = httpx.get(f"{base_url}/debug/pprof/profile?seconds=1", timeout=30).status_code
    assert status == 200


def test_a_thread_started_during_the_profile_is_seen_by_name(base_url: str) -> None:
    bodies: list[str] = []

    def take() -> None:
        response = httpx.get(f"{base_url}/debug/pprof/profile?seconds=2&format=collapsed")
        bodies.append(response.text)

    taker = threading.Thread(target=take)
    taker.start()
    deadline = time.monotonic() + 10
    while not sampling() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the sampler has learnt the threads there were
    with running(spin_hot_loop, "late-worker"):
        taker.join(30)
    threads = {line.split(";", 1)[0] for line in bodies[0].splitlines()}
    assert "late-worker" in threads, threads
    assert not [name for name in threads if name.startswith("thread-")]
