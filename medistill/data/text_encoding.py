"""Refuse a table that is not UTF-8 text with the line of its first foreign byte and how to
convert it (no pandas: the deployment's readers use it too).

Hospital exports are often in a Windows code page (Excel's "CSV" on a Windows machine writes
Windows-1252 in western Europe) or in UTF-16 (Excel's "Unicode Text"). medistill reads
UTF-8 only, as it reads only the comma as separator: one format to check, and the same bytes
give the same cells in training and at scoring. The check runs only after a reader failed,
so a well-formed file costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from medistill.errors import DataError

UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def first_foreign_line(path: Path) -> int | None:
    """The 1-based number of the first line of ``path`` that is not valid UTF-8, or None.
    (A UTF-8 sequence never holds a newline byte, so lines decode on their own.)"""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _is_windows_1252(path: Path, block: int = 1 << 20) -> bool:
    """Whether every byte of ``path`` is defined in Windows-1252 (read in blocks: a
    single-byte code page has no sequence to cut)."""
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            try:
                chunk.decode("cp1252")
            except UnicodeDecodeError:
                return False
    return True


def _conversion_hint(path: Path, encoding: str) -> str:
    return (f"Save the table again as 'CSV UTF-8' (Excel: File > Save As), or convert it: "
            f"iconv -f {encoding.upper()} -t UTF-8 '{path.name}' > new.csv, or with pandas: "
            f"pd.read_csv(path, encoding={encoding.lower()!r}).to_csv(new_path, index=False).")


def check_not_utf16(path: Path, *, source: str) -> None:
    """Refuse a file that starts with a UTF-16 byte-order mark."""
    with path.open("rb") as handle:
        start = handle.read(2)
    if start in UTF16_MARKS:
        raise DataError(f"{source} is UTF-16 text (Excel's 'Unicode Text' export); medistill "
                        "reads comma-separated UTF-8 CSV or Parquet.",
                        hint=_conversion_hint(path, "UTF-16"))


def not_utf8_error(path: Path, *, source: str) -> DataError:
    """The error for a file some line of which is not UTF-8: its line (or where the bytes
    break off) and the likely encoding. The foreign bytes are not shown."""
    line = first_foreign_line(path)
    where = f"line {line}" if line is not None else "its last bytes"
    if _is_windows_1252(path):
        guess, encoding = " It reads as Windows-1252 (a Windows spreadsheet's default).", "CP1252"
    else:
        guess, encoding = "", "LATIN1"
    return DataError(f"{source} is not UTF-8 text: {where} holds bytes that UTF-8 does not "
                     f"allow (an accented letter in another encoding, typically).{guess}",
                     hint=_conversion_hint(path, encoding) + " Use the file's real encoding "
                     "if you know it.")


__all__ = ["check_not_utf16", "first_foreign_line", "not_utf8_error"]
