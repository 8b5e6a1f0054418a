"""scripts/ensure-chromium.sh, which CI runs before the suite: with Chromium there, it changes nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.browser.conftest import CHROMIUM

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-chromium.sh"


def test_finds_the_installed_chromium_and_installs_nothing():
    assert os.access(SCRIPT, os.X_OK)
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        env=os.environ | {"TRAINYARD_CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"chromium: found {CHROMIUM}"
