"""#16.6: user text (paths, column names) is never read as Rich console markup, and no
message quotes a cell value."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from medistill.cli import app

runner = CliRunner()


def _run(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def test_16_6_markup_in_a_path_is_printed_verbatim(tmp_path: Path) -> None:
    folder = tmp_path / "d[/x][bold]"
    folder.mkdir(parents=True)
    pipeline = folder / "p.yaml"
    pipeline.write_text("data: {source: csv, path: 'missing[/x].csv', label: y}\n"
                        "privacy: {target_epsilon: 3}\n")
    result = _run(["run", str(pipeline), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    assert "d[/x][bold]/missing[/x].csv' does not exist" in result.output


def test_16_6_identifier_hint_prints_its_brackets(tmp_path: Path, cohort_table) -> None:
    csv = tmp_path / "t.csv"
    cohort_table.head(400).to_csv(csv, index=False)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"data: {{source: csv, path: {csv}, label: cv_event_1y, "
                        "id_column: patient_id}\nprivacy: {target_epsilon: 3}\n")
    result = _run(["run", str(pipeline), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "data.identifiers: [name, mrn, phone]" in result.output
    for value in cohort_table.head(400)[["name", "mrn", "phone"]].to_numpy().ravel()[:60]:
        assert str(value) not in result.output


def test_16_6_non_numeric_cell_is_not_quoted(tmp_path: Path, cohort_table) -> None:
    frame = cohort_table.head(400).drop(columns=["name", "mrn", "phone"])
    frame["bmi"] = frame["bmi"].astype(object)
    frame.loc[7, "bmi"] = "Zyxwquorth Smith 555-0100"
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"data: {{source: csv, path: {csv}, label: cv_event_1y, "
                        "id_column: patient_id, feature_types: {bmi: numeric}}\n"
                        "privacy: {target_epsilon: 3}\n")
    result = _run(["run", str(pipeline), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "column 'bmi' is numeric but row 9" in result.output
    assert "Zyxwquorth" not in result.output and "555" not in result.output


def test_16_6_error_messages_quote_no_cell_values_in_source() -> None:
    """A guard: the value-quoting pattern of the old numeric check is gone from the data
    package (it printed ``holds '<cell>'``)."""
    import medistill.data as package

    root = Path(package.__file__).parent
    offenders = [p.name for p in root.rglob("*.py") if "holds '{" in p.read_text()]
    assert offenders == []
