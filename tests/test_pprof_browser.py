"""The flame graph page in headless Chromium: drawn offline, hover, zoom, search, reset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium, screenshot_dir
from tests.test_pprof_support import pprof_app, running, serve, spin_hot_loop

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium(1280, 800) as driver:
        yield driver


def share(driver: WebDriver, element: WebElement) -> float:
    """The element's width as a fraction of the graph's."""
    graph = driver.find_element(By.ID, "graph")
    return float(element.rect["width"]) / float(graph.rect["width"])


def box(driver: WebDriver, name: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'.box[data-name="{name}"]')


def test_flame_graph_page(browser: WebDriver) -> None:
    with (
        running(spin_hot_loop, "hot-worker"),
        serve(pprof_app()) as url,
    ):
        browser.get(f"{url}/debug/pprof/profile?seconds=1&format=flamegraph")
    # The server is gone from here on: the page works offline, and fetched nothing but itself.
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".box"))
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [name for name in fetched if not name.endswith("/favicon.ico")] == []
    assert "CPU profile: 1." in browser.title

    root = box(browser, "all")
    assert share(browser, root) > 0.99
    hot = box(browser, "spin_hot_loop")
    before = share(browser, hot)
    assert 0.2 < before <= 1.0

    ActionChains(browser).move_to_element(hot).perform()
    tip = browser.find_element(By.ID, "tip")
    assert tip.is_displayed()
    assert "spin_hot_loop  test_pprof_support.py:" in tip.text and "samples" in tip.text

    hot.click()  # zoom in: the function takes the whole width, its callers stay above
    hot = box(browser, "spin_hot_loop")
    assert share(browser, hot) > 0.99
    assert "above" in box(browser, "thread hot-worker").get_attribute("class").split()
    assert "above" not in hot.get_attribute("class").split()

    search = browser.find_element(By.ID, "search")
    search.send_keys("/^spin_/")
    matched = browser.find_elements(By.CSS_SELECTOR, ".box.match")
    assert [element.get_attribute("data-name") for element in matched] == ["spin_hot_loop"]
    assert browser.find_element(By.ID, "status").text.startswith("Matched: ")
    browser.find_element(By.ID, "reset").click()
    browser.save_screenshot(str(screenshot_dir() / "pprof-flamegraph.png"))

    box(browser, "thread hot-worker").click()  # zoom out to an ancestor
    assert share(browser, box(browser, "thread hot-worker")) > 0.99
    assert "above" not in box(browser, "thread hot-worker").get_attribute("class").split()
    assert "above" in box(browser, "all").get_attribute("class").split()
    search.send_keys(Keys.ESCAPE)  # back to the whole profile
    assert share(browser, box(browser, "all")) > 0.99
    assert "above" not in box(browser, "all").get_attribute("class").split()
    assert abs(share(browser, box(browser, "spin_hot_loop")) - before) < 0.01
