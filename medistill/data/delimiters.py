"""Recognise a table exported with another separator than the comma (no pandas: the
deployment's readers use it too)."""

from __future__ import annotations

from medistill.errors import DataError

OTHER_SEPARATORS = {";": "semicolons (';')", "\t": "tabs", "|": "vertical bars ('|')"}


def check_comma_separated(header: str, *, source: str) -> None:
    """Refuse a CSV whose header line has no comma but splits into several columns at a
    semicolon, a tab or a vertical bar: a spreadsheet's 'CSV' in a locale whose decimal
    mark is the comma, which read as comma-separated is one column (or splits at the
    decimal commas)."""
    if "," in header:
        return
    for separator, name in OTHER_SEPARATORS.items():
        fields = header.count(separator) + 1
        if fields >= 2:
            raise DataError(
                f"{source}: the header line is separated by {name}, not commas ({fields} "
                "columns at that separator, none at a comma); medistill reads comma-separated "
                "CSV with '.' as the decimal mark, or Parquet.",
                hint="Export the table again as comma-separated CSV or as Parquet; with "
                     f"pandas: pd.read_csv(path, sep={separator!r}, decimal=',')"
                     ".to_csv(new_path, index=False) (drop decimal=',' if the decimal mark "
                     "is already '.').")


__all__ = ["OTHER_SEPARATORS", "check_comma_separated"]
