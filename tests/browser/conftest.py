"""
A real browser for the admin tests: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (`scripts/install-system-packages` installs both; nothing is
downloaded). A missing browser is a failure, not a skip.

Screenshots go to $OUTBOX_SCREENSHOTS when it is set (`make screenshots` points it at
docs/images), else to the test's temporary folder.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "install them: scripts/install-system-packages (as root), or apt-get install chromium chromium-driver"
#: Without these, Chromium tries to reach Google's services, which this closed network refuses.
QUIET_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--window-size=1440,900")


@pytest.fixture
def browser(tmp_path):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL_HINT}", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*QUIET_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path, browser):
    """`screenshots(name)` saves the whole page as NAME.png."""
    folder = Path(os.environ.get("OUTBOX_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(name):
        height = browser.execute_script("return Math.max(document.body.scrollHeight, 700)")
        browser.set_window_size(1440, min(height + 120, 2400))
        path = folder / f"{name}.png"
        browser.save_screenshot(str(path))
        browser.set_window_size(1440, 900)
        return path

    return take
