"""A real headless browser for the console and docs tests: Debian's chromium, driven by
Selenium through Debian's chromedriver. Nothing is downloaded: Selenium is given both paths,
so its driver manager never runs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .servers import require

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--force-device-scale-factor=1",
                  "--hide-scrollbars")


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skips locally, fails in CI, when either is missing."""
    browser = _binary("chromium", "chromium-browser")
    driver = _binary("chromedriver")
    try:
        import selenium  # noqa: F401
        have_selenium = True
    except ImportError:
        have_selenium = False
    require("chromium, chromedriver and selenium",
            browser is not None and driver is not None and have_selenium,
            "AZR_VERIFY_REQUIRE_BROWSER")
    assert browser is not None and driver is not None
    return browser, driver


@contextmanager
def chromium(profile: Path, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A fresh headless chromium with its own profile directory; yields the WebDriver."""
    browser, driver_path = require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    # Every request the pages make, to prove nothing leaves the machine.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """URLs the browser sent requests for since the last call (Chrome's performance log);
    requests the page's Content-Security-Policy blocked never left the browser."""
    sent: dict[str, str] = {}
    blocked: set[str] = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message.get("method") == "Network.requestWillBeSent":
            sent[params["requestId"]] = params["request"]["url"]
        elif message.get("method") == "Network.loadingFailed" and \
                params.get("blockedReason") == "csp":
            blocked.add(params["requestId"])
    return [url for request_id, url in sent.items() if request_id not in blocked]
