"""A real browser: headless Chromium opens the page, uploads a phantom hemorrhage slice
and reads the verdict and the heatmap. Skipped, with the reason, where Chromium, its
driver or Selenium is missing (``.ci/run`` installs Debian's chromium and chromium-driver)."""

from __future__ import annotations

import base64
import io
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("headless Chromium not found: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,1400",
    ):
        options.add_argument(argument)
    # The system's driver: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_in_a_real_browser_shows_verdict_and_heatmap(browser, live_server, hemorrhage_slice):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(live_server + "/")
    assert "not a medical device" in browser.find_element(By.ID, "disclaimer").text
    browser.find_element(By.ID, "file").send_keys(str(hemorrhage_slice))
    Select(browser.find_element(By.ID, "model")).select_by_value("smallcnn")
    browser.find_element(By.ID, "submit").click()

    # The answer page loads after the prediction: wait for it (slow under CPU load).
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.ID, "verdict"))
    )
    assert browser.find_element(By.ID, "verdict").text in ("Hemorrhagic", "Normal")
    probability = float(browser.find_element(By.ID, "probability").text)
    threshold = float(browser.find_element(By.ID, "threshold").text)
    assert 0 <= probability <= 1 and 0 <= threshold <= 1
    heatmap = browser.find_element(By.ID, "heatmap")
    assert heatmap.is_displayed()
    source = heatmap.get_attribute("src")
    assert source.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    assert image.size == (32, 32) and image.mode == "RGB"
    assert browser.execute_script("return arguments[0].naturalWidth", heatmap) == 32
