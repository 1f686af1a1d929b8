"""The dashboard's vendored library is the one package.json pins, as scripts/build-dashboard
copies it: the committed file and the lock agree."""

from __future__ import annotations

import json
import re

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


STATIC = ROOT / "erc8004_backend" / "api" / "dashboard" / "static"
# What would parse a string as markup or code: chain and user values must never reach one.
MARKUP_SINKS = re.compile(
    r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\(|new Function\("
)


def test_no_script_of_the_dashboard_parses_markup() -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert scripts
    found = [
        f"{script.name}:{number}: {line.strip()}"
        for script in scripts
        for number, line in enumerate(script.read_text(encoding="utf-8").splitlines(), 1)
        if MARKUP_SINKS.search(line)
    ]
    assert found == []


def test_the_page_has_no_inline_script_or_style() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert "<style" not in page
    assert " style=" not in page
