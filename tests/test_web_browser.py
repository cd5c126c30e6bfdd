"""A real browser: headless Chromium (Debian's chromium + chromium-driver) drives the Classify page,
then checks the History page. Screenshots of every page go to tests/artifacts/."""

import shutil
from pathlib import Path

import pytest

from benchmarks.web_load import SAMPLES, start_server
from edge_app.shipped import DEFAULT_MODEL
from tests.conftest import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture()
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1000,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations show up there
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
    return path


def csp_violations(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def test_classify_upload_predict_then_history(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    proc, port = start_server(tmp_path / "history.sqlite3")
    base = f"http://127.0.0.1:{port}"
    try:
        browser.get(base + "/")
        assert "Classify an image" in browser.page_source
        browser.find_element(By.ID, "file").send_keys(str(SAMPLES / "ship.jpg"))
        assert browser.find_element(By.CSS_SELECTOR, "#drop span").text == "ship.jpg"  # the page's script ran
        browser.find_element(By.ID, "predict").click()
        label = WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "label")))
        assert label.text.strip().lower() == "ship"
        confidence = browser.find_element(By.ID, "confidence").text
        assert confidence.startswith("confidence ") and confidence.rstrip().endswith("%")
        bars = browser.find_elements(By.CSS_SELECTOR, "#result .bar progress")
        assert len(bars) == 5 and float(bars[0].get_attribute("value")) > float(bars[-1].get_attribute("value"))
        shot(browser, "classify")
        browser.find_element(By.LINK_TEXT, "History").click()
        rows = WebDriverWait(browser, 20).until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#history tbody tr td.label"))
        )
        assert [r.text for r in rows] == ["ship"]
        shot(browser, "history")
        Select(browser.find_element(By.ID, "label-filter")).select_by_visible_text("ship")  # submits by script
        WebDriverWait(browser, 20).until(ec.url_contains("label=ship"))
        browser.get(base + "/live")
        assert "without a camera" in browser.find_element(By.ID, "note").text
        shot(browser, "live")
        browser.get(base + "/about")
        assert DEFAULT_MODEL.stem.split("_")[0] in browser.find_element(By.ID, "card").text
        shot(browser, "about")
        assert csp_violations(browser) == []
        browser.set_window_size(390, 844)  # a phone: no page may need sideways scrolling
        wide = {}
        for name, path in (("classify", "/"), ("history", "/history"), ("live", "/live"), ("about", "/about")):
            browser.get(base + path)
            width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            shot(browser, f"{name}-390")
            if width[0] > width[1]:
                wide[name] = width
        assert browser.execute_script("return window.innerWidth") <= 400
        assert wide == {}, f"pages wider than the phone's screen (scrollWidth, innerWidth): {wide}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
