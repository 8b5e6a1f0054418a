"""A real Chromium (Debian's, never Playwright's download) driven by Playwright against the live stack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("TRAINYARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1360, "height": 900}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the dashboard tests need one. Install Debian's with "
            "`sudo bash scripts/ensure-chromium.sh` (apt-get install chromium), or set TRAINYARD_CHROMIUM "
            "to a Chromium binary.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the page logged as errors, and uncaught exceptions: a test asserts on it."""
    return []


@pytest.fixture
def dashboard(browser, stack, console_errors) -> Iterator[Page]:
    """A fresh tab on the live stack's dashboard, recording console errors."""
    context = browser.new_context(viewport=VIEWPORT, base_url=stack.url)
    context.set_default_timeout(30_000)
    # The key a user's `/?key=...` address leaves in the tab, there before the page's scripts run.
    context.add_init_script(f"sessionStorage.setItem('trainyard.api-key', {stack.api_key!r})")
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    page.on("pageerror", lambda error: console_errors.append(f"uncaught: {error}"))
    yield page
    context.close()
