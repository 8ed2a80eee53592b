"""The boutique under load: Locust visitors against the whole system on this machine.

Three runs of ``--duration`` seconds (60 by default): 10 and 50 visitors with
clue's default adaptive sampler, then 50 visitors with every trace sampled
(``OTEL_TRACES_SAMPLER=always_on``), the baseline measured in the same run.
Telemetry goes to the local viewer (``python -m clue.collector``) as in
``make demo``. Per run: requests per second, p50/p95/p99 per page, error
rate, and each process's share of the CPU time (psutil on the child pids).

Goals: no failed request without fault injection; sampling every trace
keeps at least 60 % of the adaptive sampler's throughput at 50 visitors and
costs at most 1.5 times its CPU per request (the visitors' think time of 1-3 s
caps the rate well below what the machine can serve, so the CPU is where the
cost of sampling shows).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _goal import goal

from reference_services.launcher import Boutique

PAGES = ("home", "product", "cart", "add to cart", "checkout")


def cpu_seconds(boutique: Boutique) -> dict[str, float]:
    """user+system CPU seconds of each running child so far."""
    found = {}
    for name in boutique.processes:
        child = boutique.child(name)
        if child is not None:
            times = psutil.Process(child.pid).cpu_times()
            found[name] = times.user + times.system
    return found


def load(boutique: Boutique, users: int, duration: float, out: Path) -> dict[str, Any]:
    """One loadgen run; the summary with the CPU share of every process."""
    report = out / f"load-{users}.json"
    before = cpu_seconds(boutique)
    loadgen = subprocess.run(
        [
            *(sys.executable, "-m", "reference_services.loadgen", "--users", str(users)),
            *("--duration", str(duration), "--host", boutique.shop_url, "--json", str(report)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    after = cpu_seconds(boutique)
    print(loadgen.stdout, end="", flush=True)
    if not report.exists():
        raise RuntimeError(f"the load generator failed:\n{loadgen.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(report.read_text())
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(used.values()) or 1.0
    summary["cpu"] = {
        name: {"seconds": round(s, 2), "share": s / total, "cores": s / summary["seconds"]}
        for name, s in sorted(used.items(), key=lambda kv: -kv[1])
    }
    return summary


def cpu_per_request(summary: dict[str, Any]) -> float:
    """CPU seconds of every process together per request served."""
    used = sum(cpu["seconds"] for cpu in summary["cpu"].values())
    return float(used / max(summary["total"]["requests"], 1))


def percentiles(page: dict[str, Any]) -> str:
    return f"{page['p50_ms']:>6.0f}{page['p95_ms']:>6.0f}{page['p99_ms']:>6.0f}"


def show_cpu(summary: dict[str, Any]) -> None:
    print(f"{'process':<16}{'cpu s':>8}{'share':>8}{'cores':>8}")
    for name, cpu in summary["cpu"].items():
        print(f"{name:<16}{cpu['seconds']:>8.1f}{cpu['share']:>8.1%}{cpu['cores']:>8.2f}")


def run_system(
    sampler: str | None, visitors: list[int], duration: float, work: Path
) -> dict[int, Any]:
    env = {"OTEL_TRACES_SAMPLER": sampler} if sampler else {}
    data = work / (sampler or "adaptive")
    results = {}
    with Boutique(data, base_port=0, env=env) as boutique:
        for users in visitors:
            label = sampler or "adaptive sampler"
            print(f"== {users} visitors, {label}, {duration:g} s", flush=True)
            results[users] = load(boutique, users, duration, data)
            show_cpu(results[users])
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-boutique-"))
    try:
        adaptive = run_system(None, [10, 50], args.duration, work)
        sampled = run_system("always_on", [50], args.duration, work)[50]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for users in (10, 50):
        goal(f"boutique.error_rate_{users}", adaptive[users]["total"]["error_rate"], "<=", 0)
    ratio = sampled["total"]["rps"] / adaptive[50]["total"]["rps"]
    goal("boutique.sampled_rps_ratio", ratio, ">=", 0.6)
    # the visitors' think time caps the rate, so the cost of sampling shows in CPU per request
    cost = cpu_per_request(sampled) / cpu_per_request(adaptive[50])
    goal("boutique.sampled_cpu_per_request_ratio", cost, "<=", 1.5)
    print("== 50 visitors, p50/p95/p99 ms: adaptive | always_on")
    for page in (*PAGES, "total"):
        a = adaptive[50]["total"] if page == "total" else adaptive[50]["pages"].get(page)
        s = sampled["total"] if page == "total" else sampled["pages"].get(page)
        if a and s:
            print(f"{page:<14}{percentiles(a)}  |{percentiles(s)}")
    for label, run in (("adaptive", adaptive[50]), ("always_on", sampled)):
        print(f"{label}: {1000 * cpu_per_request(run):.1f} ms of CPU per request (all processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
