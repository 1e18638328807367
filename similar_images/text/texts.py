"""Reading a text corpus: one column of a CSV file, cleaned, each text once."""

from __future__ import annotations

import csv
import os

from similar_images.errors import DatabaseError
from similar_images.models.minilm import clean_text


def read_texts(csv_path: str | os.PathLike, column: str = "text") -> tuple[list[str], list[dict]]:
    """Read the texts of one column of a UTF-8 CSV file with a header row.

    Texts are cleaned with :func:`clean_text`; empty ones, repeats of an earlier row, and
    malformed rows (more or fewer fields than the header: usually a text with a comma
    that was not quoted, which csv would otherwise cut silently) are skipped and reported
    with their line number.

    Returns:
        ``(texts, skipped)``; ``skipped`` holds ``{"path": "line N", "reason": ...}``
        (N is the line of the file where the row starts), the manifest's format for
        skipped inputs.

    Raises:
        DatabaseError: the file is missing or unreadable, or has no such column.
    """
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, strict=True)
            header = next(reader, None) or []
            if column not in header:
                raise DatabaseError(f"{csv_path}: no column {column!r} (columns: {', '.join(header) or 'none'})")
            at = header.index(column)
            texts, skipped, first_line = [], [], {}
            start = reader.line_num + 1
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields:
                    continue  # a blank line is no row
                problem = _row_problem(fields, header)
                text = clean_text(fields[at]) if problem is None else ""
                if problem is not None:
                    skipped.append({"path": f"line {line}", "reason": problem})
                elif not text:
                    skipped.append({"path": f"line {line}", "reason": "empty text"})
                elif text in first_line:
                    skipped.append({"path": f"line {line}", "reason": f"duplicate of line {first_line[text]}"})
                else:
                    first_line[text] = line
                    texts.append(text)
    except FileNotFoundError:
        raise DatabaseError(f"{csv_path}: CSV file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatabaseError(f"{csv_path}: not a readable UTF-8 CSV file ({exc})") from None
    if not texts:
        raise DatabaseError(f"{csv_path}: column {column!r} holds no text")
    return texts, skipped


def _row_problem(fields: list[str], header: list[str]) -> str | None:
    if len(fields) == len(header):
        return None
    return (f"malformed row: {len(fields)} fields, the header has {len(header)} "
            "(quote texts that hold commas)")
