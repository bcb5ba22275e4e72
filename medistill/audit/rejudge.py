"""``medistill audit RUN_DIR``: re-judge a finished run against a policy.

The run folder's manifest is verified first: an edited ``report.json`` (or any changed,
missing, added or symlinked file) is refused, so hashes are never rewritten over content
nobody can vouch for. The new folder is built from the verified files only (subfolders
included, symbolic links never followed) and swapped in atomically. Each re-judgement is
kept in ``report.json["rejudgements"]``: when, the policy file and its sha256, and the
verdict it replaced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

from medistill.audit.gates import DEFAULT_POLICY_PATH, load_policy, rejudge
from medistill.audit.report import render_html, render_markdown
from medistill.errors import RunFolderError
from medistill.runfolder import AtomicRunFolder, require_verified

REPORT_FILES = ("report.json", "report.html", "report.md")


def _policy_record(policy_path: Path | None) -> dict:
    path = DEFAULT_POLICY_PATH if policy_path is None else Path(policy_path)
    return {"file": "default" if policy_path is None else str(Path(policy_path).absolute()),
            "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def rejudge_report(report: dict, policy_path: Path | None) -> dict:
    """``report`` re-judged under the policy at ``policy_path`` (None: the default), with
    this re-judgement appended to its history."""
    policy = load_policy(policy_path)
    judged = rejudge(report, policy)
    entry = {"at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "policy": {"name": policy.name, **_policy_record(policy_path)},
             "previous_verdict": report.get("verdict"),
             "previous_policy": report.get("policy"),
             "verdict": judged["verdict"]}
    judged["policy"] = {"name": policy.name, "file": entry["policy"]["file"],
                        "sha256": entry["policy"]["sha256"]}
    judged["rejudgements"] = [*report.get("rejudgements", []), entry]
    return judged


def rejudge_run(run_dir: Path, policy_path: Path | None) -> dict:
    """Verify ``run_dir``, recompute gates and verdict, and replace its report files
    atomically. Raises :class:`RunFolderError` (exit 2) if the folder does not verify."""
    run_dir = Path(run_dir)
    if not (run_dir / "report.json").is_file():
        raise RunFolderError(f"'{run_dir}' is not a medistill run folder: report.json is missing.")
    listed = require_verified(run_dir, purpose="re-judge it")
    try:
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunFolderError(f"'{run_dir / 'report.json'}' is not valid JSON.") from None
    judged = rejudge_report(report, policy_path)
    with AtomicRunFolder(run_dir) as tmp:
        for name in listed:
            if name in REPORT_FILES:
                continue
            source, target = run_dir / name, tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target, follow_symlinks=False)
        (tmp / "report.json").write_text(json.dumps(judged, indent=2, allow_nan=False))
        (tmp / "report.html").write_text(render_html(judged), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(judged), encoding="utf-8")
        copied = {n: d for n, d in listed.items() if n not in REPORT_FILES}
        _check_copies(tmp, copied)
    return judged


def _check_copies(folder: Path, listed: dict[str, str]) -> None:
    """The copies still match the verified hashes (nothing changed while copying)."""
    from medistill.runfolder import sha256_of

    changed = [n for n, d in listed.items() if sha256_of(folder / n) != d]
    if changed:
        raise RunFolderError(f"{', '.join(changed)} changed while the run folder was being "
                             "re-judged; nothing was replaced.")


__all__ = ["rejudge_report", "rejudge_run"]
