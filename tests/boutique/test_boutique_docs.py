"""docs/boutique.md agrees with the code: the printed URLs, every fault command, the
command-line options, the metric names and the images it shows.

The walkthroughs' behaviour is checked by test_faults.py and test_e2e.py; this
checks that what the page tells the reader to type is accepted as written.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from reference_services.__main__ import parser as launcher_parser
from reference_services.common.faults import FaultError
from reference_services.launcher import DEFAULT_BASE_PORT, Boutique, print_running

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "boutique.md"
TEXT = DOC.read_text()


def section(title: str) -> str:
    """The text of ``## title`` up to the next ``## ``."""
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end > 0 else None]


def options(table_of: str) -> set[str]:
    """The ``--options`` in the first column of the tables of a section."""
    return set(re.findall(r"^\| `(--[a-z-]+)` \|", section(table_of), re.M))


def test_the_printed_urls_are_the_default_port_plan(tmp_path: Path) -> None:
    plan = Boutique(tmp_path, base_port=DEFAULT_BASE_PORT, collector=True)
    printed = io.StringIO()
    print_running(plan.state(), printed)
    shown = printed.getvalue().replace(str(plan.data_dir), "/path/to/clue/var/boutique")
    assert shown in section("Run it")
    assert plan.processes["collector"].port == 18024
    assert plan.processes["collector"].extra["http_port"] == 18026


def test_the_launcher_options_exist() -> None:
    known = {o for action in launcher_parser()._actions for o in action.option_strings}
    assert options("Run it") == known - {"-h", "--help"}


def test_the_loadgen_options_exist() -> None:
    # --help in a child process: importing the load generator monkey-patches with gevent
    shown = subprocess.run(
        [sys.executable, "-m", "reference_services.loadgen", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    known = set(re.findall(r"(--[a-z-]+)", shown)) - {"--help"}
    assert options("Put load on it") == known


def fault_commands() -> list[tuple[str, dict[str, str]]]:
    """(service, switch values) of every ``/faults?...`` URL on the page."""
    by_admin_port = {
        proc.admin_port: name
        for name, proc in Boutique(Path("unused"), collector=False).processes.items()
    }
    found = []
    for url in re.findall(r"'(http://127\.0\.0\.1:\d+/faults\?[^']+)'", TEXT):
        parts = urlsplit(url)
        assert parts.port is not None
        found.append((by_admin_port[parts.port], dict(parse_qsl(parts.query))))
    return found


def test_every_fault_command_names_a_real_switch_and_a_valid_value() -> None:
    commands = fault_commands()
    assert len(commands) >= 13
    switched: set[tuple[str, str]] = set()
    for service, values in commands:
        switches = importlib.import_module(f"reference_services.{service}.service").faults()
        if values == {"failure_rate": "2"}:  # the page's example of a refused value
            with pytest.raises(FaultError, match=re.escape("failure_rate: '2' is not between")):
                switches.set(values)
            continue
        switches.set(values)
        switched |= {(service, name) for name in values}
    table = re.findall(r"^\| (\w+) \| `(\w+)` \|", section("Services"), re.M)
    assert switched == set(table)  # a walkthrough for every switch of the table


def test_the_shown_faults_answer_is_the_switch_description() -> None:
    shown = re.search(r"^(\{\"failure_rate\":\{.*\}\})$", TEXT, re.M)
    assert shown
    payment = importlib.import_module("reference_services.payment.service").faults()
    payment.set({"failure_rate": "0.5"})
    assert json.loads(shown.group(1)) == payment.describe()


def test_every_metric_on_the_page_exists() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "reference_services").rglob("*.py"))
    instruments = set(re.findall(r'"(boutique\.[a-z_.]+)"', source))
    named = set(re.findall(r"`(boutique\.[a-z_.]+)`", TEXT))
    assert named and named <= instruments
    exposed = {name.replace(".", "_") + "_total" for name in instruments}
    prometheus = set(re.findall(r"(boutique_[a-z_]+_total)", TEXT))
    assert prometheus and prometheus <= exposed


def test_every_image_is_committed() -> None:
    images = re.findall(r"\]\((images/[^)]+)\)", TEXT)
    assert len(images) >= 16  # the tour's screenshots, order pages included
    for image in images:
        assert (ROOT / "docs" / image).is_file(), image
