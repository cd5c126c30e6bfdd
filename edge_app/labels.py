"""Label files: one label per line, or `index label` per line (as in many TFLite model zips)."""

from __future__ import annotations

import re
from pathlib import Path

from edgeclf.edge_app.errors import MetadataError

_INDEXED = re.compile(r"^\s*(\d+)[\s:,]+(.+?)\s*$")


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Read a labels file; indexed lines are placed at their index, gaps are an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetadataError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"cannot read labels file {path}: {exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise MetadataError(f"labels file {path} is empty")
    matches = [_INDEXED.match(line) for line in lines]
    if all(matches):
        by_index = {int(m.group(1)): m.group(2) for m in matches if m}
        if len(by_index) != len(lines) or sorted(by_index) != list(range(len(by_index))):
            raise MetadataError(f"labels file {path}: indices must be 0..{len(lines) - 1} without gaps or repeats")
        return tuple(by_index[i] for i in range(len(by_index)))
    return tuple(lines)
