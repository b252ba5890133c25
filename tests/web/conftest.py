"""The web page on the session's real tritonserver, and Debian's Chromium driven headless by Selenium.

Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver (``scripts/install_system_deps.sh``
installs both), so selenium-manager never runs and nothing is downloaded. Without them the browser
tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("BODYDANCE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("BODYDANCE_CHROMEDRIVER", "/usr/bin/chromedriver"))


@pytest.fixture(scope="session")
def web_app(server, tmp_path_factory):
    """(page URL, DanceStudio) of one app on a free port; every file it made is gone afterwards."""
    pytest.importorskip("gradio", reason="the web extra is not installed")
    from bodydance.serving.server import free_port
    from bodydance_client import web

    studio = web.DanceStudio(server.grpc_url, root=tmp_path_factory.mktemp("web"), timeout_s=120)
    blocks = web.build_app(studio, concurrency=2)
    url = web.launch(blocks, studio, port=free_port(), quiet=True)
    try:
        yield url.rstrip("/"), studio
    finally:
        blocks.close()
        root = studio.root
        studio.close()
        assert not root.exists()


def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        message = f"{', '.join(missing)} missing: scripts/install_system_deps.sh installs chromium and chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("selenium", reason="the web extra is not installed")


def new_browser(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1300", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--use-fake-ui-for-media-stream"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    # An explicit driver path: Selenium skips selenium-manager altogether.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def browser(tmp_path):
    _browser_or_skip()
    driver = new_browser(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def make_browser(tmp_path):
    """A factory for extra browsers (several users at once)."""
    _browser_or_skip()
    drivers = []

    def make():
        drivers.append(new_browser(tmp_path))
        return drivers[-1]

    yield make
    for driver in drivers:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot_copy():
    """Where to copy the README's screenshot to, when BODYDANCE_WEB_SCREENSHOT names a file."""
    target = os.environ.get("BODYDANCE_WEB_SCREENSHOT")

    def copy(path: Path) -> None:
        if target:
            shutil.copyfile(path, target)

    return copy
