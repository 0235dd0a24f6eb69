"""Line-oriented file reading with file:line error messages.

Files are split on b"\\n" only (never on \\r or Unicode line separators, which occur inside tweets),
so line i of a text file pairs with line i of its labels file exactly as in the source. `.gz` files
are read through gzip transparently.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from kdtune.errors import UsageError


def _open_binary(path: Path):
    if not path.is_file():
        raise UsageError(f"missing data file {path}")
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without its terminator); a final empty line is skipped."""
    with _open_binary(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise UsageError(f"{path} line {number}: not UTF-8 ({exc.reason})") from None
        except (OSError, EOFError) as exc:  # truncated or corrupt gzip
            raise UsageError(f"{path}: cannot read ({exc})") from None


def read_jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line; every record must hold `required`."""
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {number}: malformed JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path} line {number}: expected a JSON object")
        missing = [key for key in required if key not in record]
        if missing:
            raise UsageError(f"{path} line {number}: missing field(s) {', '.join(missing)}")
        yield number, record
