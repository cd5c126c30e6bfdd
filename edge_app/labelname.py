"""Label names that become folder names (`capture`, the Teach and Review pages): one check, used by all.

A label is a folder under the teach data, so a name that is not one plain path component could write
outside it ('../x'), make a nested folder ('a/b'), hide itself from the class listing ('.x': hidden
folders are skipped by datasets.class_names), or break a terminal or a log line (control characters).
"""

from __future__ import annotations

import unicodedata

from edgeclf.edge_app.errors import EdgeClfError

MAX_LABEL_CHARS = 100  # a folder name (ext4 allows 255 bytes; UTF-8 takes up to 4 a character)


class LabelError(EdgeClfError):
    """A label that cannot name a folder: the message says why, in one line."""


def label_problem(name: str) -> str | None:
    """Why `name` cannot be a label (a folder of its own), or None when it can."""
    if not name or not name.strip():
        return "the label is empty"
    if name != name.strip():
        return f"the label {name.strip()!r} has spaces at its start or end"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "the label holds control characters"
    shown = repr(name)
    if "/" in name or "\\" in name:
        return f"the label {shown} holds a path separator ('/' or '\\'); use one plain name such as 'my_cup'"
    if ".." in name:
        return f"the label {shown} holds '..'"
    if name.startswith("."):
        return f"the label {shown} starts with a dot (a hidden folder)"
    if len(name) > MAX_LABEL_CHARS:
        return f"the label has {len(name)} characters; at most {MAX_LABEL_CHARS}"
    return None


def check_label(name: str) -> str:
    """`name` when it can be a label; LabelError (one line) otherwise."""
    problem = label_problem(name)
    if problem:
        raise LabelError(problem)
    return name
