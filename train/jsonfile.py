"""JSON files a user may have edited or truncated: one EdgeClfError naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError


def read_json(path: Path) -> Any:
    """Parsed JSON from `path`; unreadable, non-UTF-8 or invalid JSON is one EdgeClfError naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise EdgeClfError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise EdgeClfError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeClfError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise EdgeClfError(f"{path} is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # an integer beyond Python's 4,300-digit conversion limit
        reason = str(exc).split(":")[0].lower()
        raise EdgeClfError(f"{path} is not usable JSON: a number is too long ({reason})") from None
