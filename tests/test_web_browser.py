"""A real browser: headless Chromium (Debian's chromium + chromium-driver) drives the Classify page,
then checks the History page; and the Teach page of a server whose camera is a video: capture, Learn,
and the new label on the Live page. Screenshots of every page go to tests/artifacts/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeclf.benchmarks.web_load import SAMPLES, free_port, request, start_server
from edgeclf.edge_app.shipped import DEFAULT_MODEL
from tests.conftest import ROOT, wait_until

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


def phone_width_problems(driver, base: str, pages: dict[str, str]) -> dict[str, list[int]]:
    """Screenshots of `pages` ({name: path}) at 390 px wide; those wider than the screen."""
    driver.set_window_size(390, 844)
    wide = {}
    for name, path in pages.items():
        driver.get(base + path)
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        shot(driver, f"{name}-390")
        if width[0] > width[1]:
            wide[name] = width
    assert driver.execute_script("return window.innerWidth") <= 400
    return wide


def collected_frames(folder: Path, n: int) -> None:
    """`run --collect`'s folder with `n` frames of the sample clip (names as the collector makes them)."""
    import cv2

    from edgeclf.edge_app.collector import frame_name

    cap = cv2.VideoCapture(str(SAMPLES / "clip.mp4"))
    for i in range(n):
        for _ in range(8):
            ok, image = cap.read()
        assert ok
        (folder / "uncertain").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "uncertain" / frame_name(1_764_300_000 + i, i * 8)), image)
    cap.release()


def test_teach_from_a_video_then_the_live_page_says_the_new_label(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    collected_frames(tmp_path / "collect", 4)
    port = free_port()
    cmd = [sys.executable, "-m", "edgeclf.edge_app.web.serve", "--port", str(port), "--db", str(tmp_path / "h.sqlite3")]
    cmd += ["--source", str(SAMPLES / "clip.mp4"), "--review-dir", str(tmp_path / "collect")]
    cmd += ["--history-live-every", "0.5"]
    token = "a-long-enough-test-token-1234"  # Learn changes the model in force: a server without one refuses it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGECLF_TOKEN": token}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def up() -> bool:
        assert proc.poll() is None, "the server exited"
        try:
            return request("127.0.0.1", port, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(up, 60, "the server")
        browser.get(base + f"/teach?token={token}")  # once: the cookie it sets carries it from then on
        assert browser.find_element(By.ID, "model").text == DEFAULT_MODEL.name
        label = browser.find_element(By.ID, "capture-label")
        label.send_keys("my scene")
        count = browser.find_element(By.ID, "capture-count")
        count.clear()
        count.send_keys("6")
        browser.find_element(By.ID, "capture").click()
        message = WebDriverWait(browser, 30).until(ec.visibility_of_element_located((By.ID, "message")))
        assert message.text == "captured 6 frame(s) of my scene"
        rows = browser.find_elements(By.CSS_SELECTOR, "#classes tbody tr")
        assert [
            (r.find_element(By.CLASS_NAME, "label").text, r.find_element(By.CLASS_NAME, "count").text) for r in rows
        ] == [("my scene", "6")]
        assert browser.find_element(By.ID, "mode").get_attribute("value") == "extend"
        browser.find_element(By.ID, "learn").click()
        # the page before Learn shows the capture's #message too: wait for the new page's text, re-finding the
        # element on each poll (reading the old one while the form posts is a StaleElementReferenceException)
        WebDriverWait(browser, 60).until(
            ec.text_to_be_present_in_element((By.ID, "message"), "learned 1 class(es) in ")
        )
        assert "now taught-" in browser.find_element(By.ID, "message").text
        assert browser.find_element(By.ID, "model").text.startswith("taught-")
        assert "11 classes in extend mode" in browser.find_element(By.ID, "learned").text
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script(
                "const i = document.getElementById('frame'); return i.complete && i.naturalWidth === 640"
            )
        )
        shot(browser, "teach")
        browser.get(base + "/live")
        WebDriverWait(browser, 30).until(ec.text_to_be_present_in_element((By.ID, "live-label"), "my scene"))
        browser.get(base + "/review")
        frames = browser.find_elements(By.CSS_SELECTOR, "#frames input[name=items]")
        assert len(frames) == 4
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#review img')].every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        shot(browser, "review")
        frames[0].click()
        browser.find_element(By.ID, "review-label").send_keys("my scene")
        browser.find_element(By.ID, "assign").click()
        WebDriverWait(browser, 20).until(ec.text_to_be_present_in_element((By.ID, "message"), "labelled my scene"))
        assert browser.find_element(By.ID, "message").text == "1 item(s) labelled my scene"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#frames input[name=items]")) == 3
        assert csp_violations(browser) == []
        wide = phone_width_problems(browser, base, {"teach": "/teach", "review": "/review"})
        assert wide == {}, f"pages wider than the phone's screen (scrollWidth, innerWidth): {wide}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
