"""The installed package serves the whole dashboard: pyproject's package-data covers every file under
api/static, the vendored uPlot included, and that copy is the version its README names."""

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
UPLOT = ROOT / "api" / "static" / "vendor" / "uplot"


def test_package_data_ships_every_dashboard_file():
    package = ROOT / "api"
    shipped = {path for pattern in PACKAGE_DATA["api"] for path in package.glob(pattern) if path.is_file()}
    dashboard = {path for path in (package / "static").rglob("*") if path.is_file()}
    assert sorted(str(path.relative_to(package)) for path in dashboard - shipped) == []


def test_the_vendored_uplot_is_the_version_its_readme_names():
    version = r"(\d+\.\d+\.\d+)"
    named = re.search(rf"uPlot {version}, vendored from npm", (UPLOT / "README.md").read_text())
    banner = re.search(rf"github\.com/leeoniya/uPlot \(v{version}\)", (UPLOT / "uPlot.esm.js").read_text())
    assert named and banner and named.group(1) == banner.group(1)
    assert "MIT" in (UPLOT / "LICENSE").read_text()
