"""A PNG of the report's first screen, rendered by headless Chromium (Debian ``chromium``).

Optional: when no Chromium binary is found, :func:`screenshot_html` returns ``False`` and
nothing else happens. Chromium runs with a fresh profile, no network services, no GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
TIMEOUT_S = 120


def chromium_path() -> str | None:
    """The first Chromium binary found (Debian's ``/usr/bin/chromium`` first), or None."""
    for candidate in CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_command(binary: str, html_path: Path, png_path: Path, user_data_dir: Path, *,
                     window_size: tuple[int, int]) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={user_data_dir}",
            f"--screenshot={png_path}",
            f"--window-size={window_size[0]},{window_size[1]}",
            Path(html_path).resolve().as_uri()]


def screenshot_html(html_path: Path, png_path: Path, *,
                    window_size: tuple[int, int] = (1280, 1600)) -> bool:
    """Render ``html_path`` and write its first ``window_size`` pixels to ``png_path``.

    True when the PNG was written; False when Chromium is missing, fails or times out.
    """
    binary = chromium_path()
    if binary is None or not Path(html_path).is_file():
        return False
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    if png_path.exists():
        png_path.unlink()
    with tempfile.TemporaryDirectory(prefix="medistill-chromium-") as profile:
        try:
            done = subprocess.run(
                chromium_command(binary, Path(html_path), png_path, Path(profile),
                                 window_size=window_size),
                capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0 and png_path.is_file() and png_path.stat().st_size > 0


__all__ = ["chromium_command", "chromium_path", "screenshot_html"]
