"""The report in a real browser: skipped where no Chromium is on PATH."""

import subprocess
import sys
from pathlib import Path

import pytest

from slimkit.report import write_html_report
from slimkit.report.browser import check_report, find_chromium
from slimkit.report.html import SCRIPT

from tests.report.conftest import RUN_FLAGS, train

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no chromium binary on PATH")
SCRIPT_FILE = Path(__file__).resolve().parents[2] / "scripts" / "check_report_in_chromium.py"


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("chromium")
    runs = [train(out / name, *RUN_FLAGS[name]) for name in ("dense", "unstructured")]
    return write_html_report(runs, out / "report.html")


def test_report_renders_with_every_image_decoded(small_report, tmp_path):
    check = check_report(small_report, tmp_path / "shot.png")
    assert check.ok, check.problems
    assert check.images == check.images_loaded == small_report.read_text().count("<img") == 2 + 2 + 1 + 1
    assert check.screenshot.is_file() and check.pixel_std > 1.0 and not check.js_errors


def test_checker_catches_broken_pages(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(f"<!DOCTYPE html><html><head><script>{SCRIPT}</script></head><body><p>x</p>"
                    "<img src=\"data:image/png;base64,AAAA\"><script>undefinedFunction();</script></body></html>")
    check = check_report(page, tmp_path / "shot.png")
    assert not check.ok
    assert check.images == 1 and check.images_loaded == 0
    assert any("Uncaught" in line for line in check.js_errors)


def test_script_checks_a_report(small_report, tmp_path):
    shot = tmp_path / "script-shot.png"
    result = subprocess.run([sys.executable, str(SCRIPT_FILE), "--report", str(small_report), "--screenshot", str(shot)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "images decoded 6/6" in result.stdout and "OK" in result.stdout and shot.is_file()
