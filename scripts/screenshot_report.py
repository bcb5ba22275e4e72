"""Screenshot the first screen of a report.html with headless Chromium.

Usage: python scripts/screenshot_report.py [REPORT_HTML] [OUTPUT_PNG]
Defaults: runs/demo/report.html -> docs/report_first_screen.png. Exit 1 if no PNG was made.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medistill.audit.screenshot import chromium_path, screenshot_html


def main(argv: list[str]) -> int:
    html = Path(argv[0]) if argv else Path("runs/demo/report.html")
    png = Path(argv[1]) if len(argv) > 1 else Path("docs/report_first_screen.png")
    if chromium_path() is None:
        print("No Chromium found (Debian: apt-get install chromium).", file=sys.stderr)
        return 1
    if not screenshot_html(html, png):
        print(f"Chromium could not render {html}.", file=sys.stderr)
        return 1
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
