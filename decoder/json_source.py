"""A JSON document given as a path, as JSON text, or already parsed: the one reader of them.

Device classes, device maps and the copies of them shipped to Spark workers all
come in these three forms; a caller names what it reads (for messages) and the
error it raises.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

__all__ = ["is_path", "read_json_source"]


def is_path(source: Any) -> bool:
    """A file name rather than JSON text (a str that starts like JSON is text)."""
    return isinstance(source, os.PathLike) or (isinstance(source, str) and not source.lstrip().startswith(("{", "[")))


def read_json_source(source: Any, what: str, error: type[Exception]) -> Any:
    """The parsed JSON of a path or of JSON text; anything else is returned as it is.

    Unreadable files and invalid JSON raise ``error`` with one line naming ``what``."""
    if is_path(source):
        path = Path(source)
        try:
            raw = path.read_bytes()
        except (OSError, ValueError) as err:  # ValueError: a NUL in the name
            raise error(f"cannot read {what} from {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise error(f"{path}: not valid JSON: {err}") from None
    if isinstance(source, (str, bytes, bytearray)):
        try:
            return orjson.loads(source)
        except orjson.JSONDecodeError as err:
            raise error(f"the {what} text is not valid JSON: {err}") from None
    return source
