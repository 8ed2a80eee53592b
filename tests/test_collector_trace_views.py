"""The trace page's analyses in a real headless Chromium, over traces sent by OTLP/HTTP
with known timings: the critical path, the flame graph kept in step with the
waterfall (parallel spans on rows of their own), the span filter, collapsing
subtrees, and two traces compared."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.browser import chromium, screenshot_dir
from tests.test_collector_browser import _kv, rows_when, wait
from tests.test_collector_support import CollectorProcess

pytestmark = pytest.mark.browser
MS = 1_000_000

# (name, service, parent index, start ms, end ms, error, attributes)
RUN = [
    ("GET /report", "web", None, 0, 100, False, {}),
    ("auth", "web", 0, 5, 25, False, {"user": "ada"}),
    ("build report", "reports", 0, 30, 90, False, {}),
    ("SELECT rows", "db", 2, 35, 80, False, {"db.system": "postgresql"}),
    ("cache warm", "cache", 0, 40, 60, True, {}),  # parallel to "build report": off the path
    ("render", "web", 0, 92, 95, False, {}),
]
# critical time (ms) of each span of RUN, by the rule in docs/collector.md
CRITICAL = [17, 20, 15, 45, 0, 3]
# each span's flame graph row: cache warm runs beside build report (two rows tall)
FLAME_ROWS = [0, 1, 1, 2, 3, 1]
# a fan-out: three gRPC calls at once, then one more after them
FAN_OUT = [
    ("POST /checkout", "frontend", None, 0, 100, False, {}),
    ("GetCart", "cart", 0, 10, 60, False, {"rpc.system": "grpc"}),
    ("HGET", "redis", 1, 15, 40, False, {}),
    ("GetQuote", "shipping", 0, 11, 50, False, {"rpc.system": "grpc"}),
    ("Charge", "payment", 0, 12, 70, False, {"rpc.system": "grpc"}),
    ("SendConfirmation", "email", 0, 75, 90, False, {"rpc.system": "grpc"}),
]
FAN_OUT_ROWS = [0, 1, 2, 3, 4, 1]
# the same operation again: the query slower, no cache warm-up, an audit span added
RUN_B = [
    ("GET /report", "web", None, 0, 130, False, {}),
    ("auth", "web", 0, 5, 20, False, {"user": "ada"}),
    ("build report", "reports", 0, 30, 120, False, {}),
    ("SELECT rows", "db", 2, 35, 115, False, {"db.system": "postgresql"}),
    ("render", "web", 0, 121, 125, False, {}),
    ("audit", "web", 0, 122, 128, False, {}),
]


def send(collector: CollectorProcess, spans: list[tuple]) -> tuple[str, list[str]]:  # type: ignore[type-arg]
    """Export *spans* as one trace over OTLP/HTTP protobuf; its id and the span ids."""
    now = time.time_ns()
    tid, ids = os.urandom(16), [os.urandom(8) for _ in spans]
    request = ExportTraceServiceRequest()
    scopes: dict[str, object] = {}
    for i, (name, service, parent, start, end, error, attrs) in enumerate(spans):
        if service not in scopes:
            resource = request.resource_spans.add()
            resource.resource.attributes.extend(_kv({"service.name": service}))
            scopes[service] = resource.scope_spans.add()
        span = scopes[service].spans.add(  # type: ignore[attr-defined]
            trace_id=tid,
            span_id=ids[i],
            parent_span_id=ids[parent] if parent is not None else b"",
            name=name,
            start_time_unix_nano=now + start * MS,
            end_time_unix_nano=now + end * MS,
            attributes=_kv(attrs),
        )
        if error:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="timeout"))
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text
    return tid.hex(), [i.hex() for i in ids]


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorProcess]:
    c = CollectorProcess()
    try:
        yield c
    finally:
        assert c.stop() == 0


@pytest.fixture(scope="module")
def runs(collector: CollectorProcess) -> tuple[tuple[str, list[str]], tuple[str, list[str]]]:
    return send(collector, RUN), send(collector, RUN_B)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium(1440, 900) as driver:
        yield driver


def test_critical_path_in_the_json(collector: CollectorProcess, runs: tuple) -> None:  # type: ignore[type-arg]
    (trace_id, ids), _ = runs
    trace = collector.api(f"/api/traces/{trace_id}")
    by_id = {s["span_id"]: s for s in trace["spans"]}
    assert [by_id[i]["critical_ns"] for i in ids] == [ms * MS for ms in CRITICAL]
    path = trace["critical_path"]
    assert path["duration_ns"] == 100 * MS
    assert set(path["span_ids"]) == {ids[i] for i, ms in enumerate(CRITICAL) if ms}
    assert sum(s["critical_ns"] for s in trace["spans"]) == 100 * MS
    assert [by_id[i]["flame_row"] for i in ids] == FLAME_ROWS
    assert trace["flame_rows"] == 4


def test_critical_path_flame_graph_and_selection(
    collector: CollectorProcess,
    runs: tuple,  # type: ignore[type-arg]
    browser: WebDriver,
) -> None:
    (trace_id, ids), _ = runs
    shots = screenshot_dir()
    browser.get(f"{collector.ui}/trace/{trace_id}")
    rows = {
        r.get_attribute("data-span-id"): r
        for r in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")
    }
    critical = {i for i, r in rows.items() if "critical" in r.get_attribute("class").split()}
    assert critical == {ids[i] for i, ms in enumerate(CRITICAL) if ms}
    assert "5 of 6 spans" in browser.find_element(By.ID, "critical-summary").text
    rows[ids[3]].click()  # SELECT rows: 45 of the root's 100 ms on the path
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "detail-summary"), "45.0ms (45.0%")
    )
    browser.save_screenshot(str(shots / "collector-critical-path.png"))

    browser.find_element(By.ID, "view-flame").click()
    rects = rows_when(browser, "#flame rect", lambda found: len(found) == len(RUN))
    assert not browser.find_element(By.ID, "waterfall").is_displayed()
    width = {r.get_attribute("data-span-id"): float(r.get_attribute("width")) for r in rects}
    for i, (_, _, _, start, end, _, _) in enumerate(RUN):
        assert width[ids[i]] == pytest.approx(width[ids[0]] * (end - start) / 100, rel=0.01)
    by_id = {r.get_attribute("data-span-id"): r for r in rects}
    assert "selected" in by_id[ids[3]].get_attribute("class")  # the selection survived
    assert "critical" not in by_id[ids[4]].get_attribute("class")
    browser.save_screenshot(str(shots / "collector-flame.png"))
    by_id[ids[4]].click()  # cache warm: selected in both views
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "detail-title"), "cache: cache warm")
    )
    assert "off the path" in browser.find_element(By.ID, "detail-summary").text
    browser.find_element(By.ID, "view-waterfall").click()
    selected = browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row.selected")
    assert [r.get_attribute("data-span-id") for r in selected] == [ids[4]]


def test_parallel_spans_each_visible_and_selectable_in_the_flame_graph(
    collector: CollectorProcess, browser: WebDriver
) -> None:
    trace_id, ids = send(collector, FAN_OUT)
    trace = collector.api(f"/api/traces/{trace_id}")
    by_id = {s["span_id"]: s for s in trace["spans"]}
    assert [by_id[i]["flame_row"] for i in ids] == FAN_OUT_ROWS
    assert trace["flame_rows"] == 5

    browser.get(f"{collector.ui}/trace/{trace_id}")
    browser.find_element(By.ID, "view-flame").click()
    rects = rows_when(browser, "#flame rect", lambda found: len(found) == len(FAN_OUT))
    boxes = {r.get_attribute("data-span-id"): r.rect for r in rects}
    parallel = [ids[1], ids[3], ids[4]]  # GetCart, GetQuote, Charge
    assert len({boxes[i]["y"] for i in parallel}) == 3  # a row each
    assert boxes[ids[5]]["y"] == boxes[ids[1]]["y"]  # SendConfirmation back on the first
    # on screen: what is at the middle of each span's box is that span's box
    on_top = browser.execute_script(
        """return Array.from(document.querySelectorAll("#flame rect"), (r) => {
             const b = r.getBoundingClientRect();
             const hit = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
             return [r.dataset.spanId, hit && hit.closest("rect")?.dataset.spanId];
           });"""
    )
    assert all(mine == hit for mine, hit in on_top) and len(on_top) == len(FAN_OUT)
    browser.save_screenshot(str(screenshot_dir() / "collector-flame-parallel.png"))
    by_id_rect = {r.get_attribute("data-span-id"): r for r in rects}
    names = {ids[i]: f"{FAN_OUT[i][1]}: {FAN_OUT[i][0]}" for i in range(len(FAN_OUT))}
    for span_id in parallel:
        by_id_rect[span_id].click()  # a real click: fails if another element covers it
        wait(browser).until(
            ec.text_to_be_present_in_element((By.ID, "detail-title"), names[span_id])
        )
        assert "selected" in by_id_rect[span_id].get_attribute("class")
        selected = browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row.selected")
        assert [r.get_attribute("data-span-id") for r in selected] == [span_id]
    browser.find_element(By.ID, "view-waterfall").click()
    row = browser.find_element(By.CSS_SELECTOR, "#waterfall .span-row.selected")
    assert row.is_displayed() and row.get_attribute("data-span-id") == ids[4]


def test_filter_dims_and_collapse_hides(
    collector: CollectorProcess,
    runs: tuple,  # type: ignore[type-arg]
    browser: WebDriver,
) -> None:
    (trace_id, ids), _ = runs
    browser.get(f"{collector.ui}/trace/{trace_id}")

    def dimmed() -> set[str]:
        return {
            r.get_attribute("data-span-id")
            for r in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row.dimmed")
        }

    browser.find_element(By.ID, "f-min").send_keys("40ms")
    wait(browser).until(lambda _: dimmed() == {ids[1], ids[4], ids[5]})
    assert browser.find_element(By.ID, "filter-count").text == "3 of 6 spans match"
    browser.find_element(By.ID, "f-attr").send_keys("db.system=postgresql")
    wait(browser).until(lambda _: dimmed() == set(ids) - {ids[3]})
    browser.find_element(By.CSS_SELECTOR, "#span-filter button[type=reset]").click()
    wait(browser).until(lambda _: dimmed() == set())
    browser.find_element(By.ID, "f-errors").click()
    wait(browser).until(lambda _: dimmed() == set(ids) - {ids[4]})
    browser.find_element(By.CSS_SELECTOR, "#span-filter button[type=reset]").click()
    wait(browser).until(lambda _: dimmed() == set())

    def shown() -> list[str]:
        return [
            r.get_attribute("data-span-id")
            for r in browser.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")
            if r.is_displayed()
        ]

    build = browser.find_element(By.CSS_SELECTOR, f'.span-row[data-span-id="{ids[2]}"]')
    build.find_element(By.CSS_SELECTOR, ".toggle").click()
    wait(browser).until(lambda _: shown() == [i for i in ids if i != ids[3]])
    build.find_element(By.CSS_SELECTOR, ".toggle").click()
    wait(browser).until(lambda _: len(shown()) == len(ids))
    browser.find_element(By.ID, "collapse-all").click()
    wait(browser).until(lambda _: sorted(shown()) == sorted(i for i in ids if i != ids[3]))
    # selecting a hidden span in the flame graph opens its subtree in the waterfall
    browser.find_element(By.ID, "view-flame").click()
    rows_when(browser, "#flame rect", lambda found: len(found) == len(RUN))
    browser.find_element(By.CSS_SELECTOR, f'#flame rect[data-span-id="{ids[3]}"]').click()
    browser.find_element(By.ID, "view-waterfall").click()
    wait(browser).until(lambda _: len(shown()) == len(ids))
    assert "selected" in browser.find_element(
        By.CSS_SELECTOR, f'.span-row[data-span-id="{ids[3]}"]'
    ).get_attribute("class")
    browser.find_element(By.ID, "collapse-all").click()
    wait(browser).until(lambda _: len(shown()) == len(ids) - 1)
    browser.find_element(By.ID, "expand-all").click()
    wait(browser).until(lambda _: len(shown()) == len(ids))


def test_compare_two_runs(
    collector: CollectorProcess,
    runs: tuple,  # type: ignore[type-arg]
    browser: WebDriver,
) -> None:
    (a, _), (b, _) = runs
    data = collector.api("/api/compare", a=a, b=b)
    assert (data["matched"], data["only_a"], data["only_b"]) == (5, 1, 1)
    assert data["duration_diff_ns"] == 30 * MS and data["same_operation"]
    diffs = {r["name"]: (r["in"], r["diff_ns"]) for r in data["spans"]}
    assert diffs["SELECT rows"] == ("both", 35 * MS)
    assert diffs["auth"] == ("both", -5 * MS)
    assert diffs["cache warm"] == ("a", None) and diffs["audit"] == ("b", None)

    browser.get(collector.ui + "/")
    picks = rows_when(  # other tests of this module send traces of their own
        browser,
        "#results input.pick",
        lambda found: {a, b} <= {p.get_attribute("value") for p in found},
    )
    by_trace = {p.get_attribute("value"): p for p in picks}
    by_trace[a].click()
    by_trace[b].click()
    browser.find_element(By.ID, "compare-picked").click()
    wait(browser).until(ec.url_contains("/compare?"))
    rows = {
        r.find_element(By.CSS_SELECTOR, ".op").text: r
        for r in browser.find_elements(By.CSS_SELECTOR, "#compare tr.cmp-row")
    }
    assert "in-a" in rows["cache warm"].get_attribute("class")
    assert "removed" in rows["cache warm"].text
    assert "in-b" in rows["audit"].get_attribute("class") and "added" in rows["audit"].text
    select_rows = rows["SELECT rows"]
    assert "slower" in select_rows.get_attribute("class")
    assert select_rows.find_element(By.CSS_SELECTOR, ".diff").text == "+35ms (+78%)"
    assert rows["auth"].find_element(By.CSS_SELECTOR, ".diff").text == "-5ms (-25%)"
    assert "faster" in rows["auth"].get_attribute("class")
    assert "+30ms" in browser.find_element(By.ID, "compare-summary").text
    browser.save_screenshot(str(screenshot_dir() / "collector-compare.png"))


def test_compare_bad_parameters(collector: CollectorProcess, runs: tuple) -> None:  # type: ignore[type-arg]
    (a, _), _ = runs
    for path in ("/api/compare", "/compare"):
        missing = httpx.get(collector.ui + path, params={"a": a})
        assert missing.status_code == 400 and "b is required" in missing.text
        bad = httpx.get(collector.ui + path, params={"a": "x" * 50, "b": a})
        assert bad.status_code == 400 and "a must be 32 hexadecimal" in bad.text
        huge = httpx.get(collector.ui + path, params={"a": a, "b": "x" * 5000})
        assert huge.status_code == 400 and "b must be at most 1024" in huge.text
        assert "x" * 50 not in huge.text
        unknown = httpx.get(collector.ui + path, params={"a": a, "b": "0" * 32})
        assert unknown.status_code == 404 and f"trace b={'0' * 32} not found" in unknown.text
        extra = httpx.get(collector.ui + path, params={"a": a, "b": a, "c": "1"})
        assert extra.status_code == 400 and "c is an unknown parameter" in extra.text
    assert (
        httpx.get(collector.ui + "/api/compare", params={"a": "x" * 5000, "b": a}).json()[
            "parameter"
        ]
        == "a"
    )
