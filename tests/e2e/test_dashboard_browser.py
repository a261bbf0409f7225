"""The dashboard in a real headless browser (Debian's chromium driven through chromedriver): sign in,
upload the BadNets example through the form, watch the audit finish, and find its target class
highlighted with its map image loaded. A screenshot of the audit page goes to test-artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, LiveServer
from worker.examples import ExampleModel

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = REPO / "test-artifacts" / "dashboard-audit.png"
AUDIT_TIMEOUT_S = 600


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _image_loaded(driver: Any, element: Any) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", element))


def test_sign_in_upload_watch_and_inspect_the_flagged_audit(
    browser: Any, live_server: LiveServer, badnets_checkpoint: ExampleModel
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)

    # signed out: any page leads to the sign-in form, a wrong key is refused on the page
    browser.get(f"{live_server.url}/upload")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "api_key").send_keys("ba_wrong-key")
    browser.find_element(By.ID, "sign-in").click()
    assert "not known to this server" in wait.until(ec.presence_of_element_located((By.ID, "login-error"))).text
    browser.find_element(By.ID, "api_key").send_keys(live_server.api_key)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ec.url_to_be(f"{live_server.url}/upload"))  # back where we were going
    assert not browser.execute_script("return document.cookie;"), "the API key cookie must be HttpOnly"

    # upload through the form; the page's script puts the config into the query string
    browser.find_element(By.ID, "file").send_keys(str(badnets_checkpoint.path))
    browser.find_element(By.ID, "input_shape").send_keys(",".join(map(str, badnets_checkpoint.input_shape)))
    browser.find_element(By.ID, "num_classes").send_keys(str(badnets_checkpoint.num_classes))
    browser.find_element(By.ID, "arch").send_keys(badnets_checkpoint.arch)
    browser.find_element(By.ID, "name").send_keys("badnets example")
    browser.find_element(By.ID, "upload-button").click()
    wait.until(ec.url_contains("/audits/"))

    # the running page follows progress by itself and turns into the results page
    saw_progress = bool(browser.find_elements(By.ID, "progress")) or bool(browser.find_elements(By.ID, "verdict"))
    assert saw_progress
    banner = WebDriverWait(browser, AUDIT_TIMEOUT_S, poll_frequency=2).until(
        ec.presence_of_element_located((By.ID, "verdict"))
    )
    assert banner.get_attribute("data-verdict") in ("suspicious", "backdoored")

    target = str(badnets_checkpoint.target_class)
    suspected = browser.find_elements(By.CSS_SELECTOR, ".card.suspected")
    assert [card.get_attribute("data-class-index") for card in suspected][:1] == [target]
    card = suspected[0]
    browser.execute_script("arguments[0].scrollIntoView();", card)
    map_image = card.find_element(By.CSS_SELECTOR, "img.map")
    WebDriverWait(browser, 30).until(lambda driver: _image_loaded(driver, map_image))
    assert browser.find_element(By.CSS_SELECTOR, f"#trigger-{target} rect.bbox")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar.suspected")
    assert [bar.get_attribute("data-class-index") for bar in bars][:1] == [target]

    # a full-page screenshot for people to look at
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1280, min(int(height) + 100, 6000))
    browser.execute_script("window.scrollTo(0, 0);")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
