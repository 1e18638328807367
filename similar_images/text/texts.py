"""Reading a text corpus: one column of a CSV file, cleaned, each text once."""

from __future__ import annotations

import csv
import os

from similar_images.errors import DatabaseError
from similar_images.models.minilm import clean_text


def read_texts(csv_path: str | os.PathLike, column: str = "text") -> tuple[list[str], list[dict]]:
    """Read the texts of one column of a UTF-8 CSV file with a header row.

    Texts are cleaned with :func:`clean_text`; empty ones and repeats of an earlier row
    are skipped (a database holds each text once).

    Returns:
        ``(texts, skipped)``; ``skipped`` holds ``{"path": "row N", "reason": ...}``
        (N counts data rows from 1), the manifest's format for skipped inputs.

    Raises:
        DatabaseError: the file is missing or unreadable, or has no such column.
    """
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                found = ", ".join(reader.fieldnames or []) or "none"
                raise DatabaseError(f"{csv_path}: no column {column!r} (columns: {found})")
            texts, skipped, first_row = [], [], {}
            for row_number, row in enumerate(reader, start=1):
                text = clean_text(row[column] or "")
                if not text:
                    skipped.append({"path": f"row {row_number}", "reason": "empty text"})
                elif text in first_row:
                    skipped.append({"path": f"row {row_number}", "reason": f"duplicate of row {first_row[text]}"})
                else:
                    first_row[text] = row_number
                    texts.append(text)
    except FileNotFoundError:
        raise DatabaseError(f"{csv_path}: CSV file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatabaseError(f"{csv_path}: not a readable UTF-8 CSV file ({exc})") from None
    if not texts:
        raise DatabaseError(f"{csv_path}: column {column!r} holds no text")
    return texts, skipped
