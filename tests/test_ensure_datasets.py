"""scripts/ensure-datasets.sh, which `make test` runs before the suite: with the package there, it changes
nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.idx_files import FASHION_MNIST_FOLDER, needs_fashion_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-datasets.sh"


@needs_fashion_mnist
def test_finds_the_installed_package_and_installs_nothing():
    assert os.access(SCRIPT, os.X_OK)
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"datasets: found {FASHION_MNIST_FOLDER}"
