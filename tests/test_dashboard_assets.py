"""The dashboard's vendored library is the one package.json pins, as scripts/build-dashboard
copies it: the committed file and the lock agree."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT

VENDORED = ROOT / "erc8004_backend" / "api" / "dashboard" / "static" / "vendor"
INSTALLED = ROOT / "node_modules" / "chart.js"


def test_the_vendored_chart_js_is_the_pinned_version() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["chart.js"]
    header = (VENDORED / "chart.umd.min.js").read_text(encoding="utf-8")[:300]
    assert f"Chart.js v{pinned}" in header, header


def test_the_vendored_chart_js_is_the_installed_one() -> None:
    if not INSTALLED.exists():
        pytest.skip("node_modules has no chart.js (npm install, or scripts/bootstrap)")
    installed = (INSTALLED / "dist" / "chart.umd.min.js").read_bytes()
    assert (VENDORED / "chart.umd.min.js").read_bytes() == installed, "run scripts/build-dashboard"
