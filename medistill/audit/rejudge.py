"""``medistill audit RUN_DIR``: re-judge a finished run against a policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from medistill.audit.gates import load_policy, rejudge
from medistill.audit.report import render_html, render_markdown
from medistill.errors import RunFolderError
from medistill.runfolder import AtomicRunFolder


def rejudge_run(run_dir: Path, policy_path: Path | None) -> dict:
    """Recompute gates and verdict; rewrite the report files of ``run_dir`` atomically."""
    report_path = Path(run_dir) / "report.json"
    if not report_path.exists():
        raise RunFolderError(f"'{run_dir}' is not a medistill run folder: report.json is missing.")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"'{report_path}' line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    policy = load_policy(policy_path)
    report = rejudge(report, policy)
    with AtomicRunFolder(Path(run_dir)) as tmp:
        for item in Path(run_dir).iterdir():
            if item.is_file() and item.name not in ("manifest.json",):
                shutil.copy2(item, tmp / item.name)
        (tmp / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
        (tmp / "report.html").write_text(render_html(report), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report


__all__ = ["rejudge_run"]
