"""Screenshots of the web app before and after an upload, taken by headless Chromium.

Serves RUN_DIR on loopback, opens the page, uploads a slice and a scan::

    python docs/webapp/screenshots.py RUN_DIR --slice SLICE.png --scan SERIES.zip --out docs/webapp

Needs Debian's chromium and chromium-driver, and selenium (``make install`` has it).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from waitress import create_server

from ichkit.webapp import ServedRun, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--slice", required=True, type=Path)
    parser.add_argument("--scan", required=True, type=Path)
    parser.add_argument("--out", default=Path("docs/webapp"), type=Path)
    arguments = parser.parse_args()

    served = ServedRun(arguments.run_dir)
    served.warm_up()  # as `ichkit serve` does: the timings shown are those of a warm server
    server = create_server(create_app(served), host="127.0.0.1", port=0)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}/"
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(url)
        browser.save_screenshot(arguments.out / "before-upload.png")
        for upload, name in (
            (arguments.slice, "after-slice-upload.png"),
            (arguments.scan, "after-scan-upload.png"),
        ):
            browser.get(url)
            browser.find_element(By.ID, "file").send_keys(str(upload.resolve()))
            browser.find_element(By.ID, "submit").click()
            browser.find_element(By.ID, "verdict")
            height = browser.execute_script(  # the page, and the window's own bars
                "return document.documentElement.scrollHeight"
                " + window.outerHeight - window.innerHeight"
            )
            browser.set_window_size(1100, height + 20)
            time.sleep(1)  # let the resized window lay out again
            browser.save_screenshot(arguments.out / name)
            browser.set_window_size(1100, 900)
    finally:
        browser.quit()
        server.close()


if __name__ == "__main__":
    main()
