"""Headless Chromium screenshots of a report (skipped where Chromium is not installed)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from medistill.audit.screenshot import chromium_command, chromium_path, screenshot_html


def test_command_is_offline_and_uses_a_fresh_profile(tmp_path: Path) -> None:
    cmd = chromium_command("/usr/bin/chromium", tmp_path / "r.html", tmp_path / "r.png",
                           tmp_path / "profile", window_size=(1280, 1600))
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={tmp_path / 'r.png'}"):
        assert flag in cmd
    assert cmd[-1].startswith("file://")


def test_missing_html_gives_false(tmp_path: Path) -> None:
    assert screenshot_html(tmp_path / "nope.html", tmp_path / "out.png") is False


@pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed")
def test_screenshot_of_a_small_page(tmp_path: Path) -> None:
    html = tmp_path / "page.html"
    html.write_text("<!doctype html><html><body><h1>Verdict: release</h1></body></html>")
    png = tmp_path / "shot.png"
    assert screenshot_html(html, png, window_size=(640, 400)) is True
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (640, 400)
