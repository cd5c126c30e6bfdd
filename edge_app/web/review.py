"""The Review queue: the uncertain frames `run --collect DIR` saved (`DIR/<predicted label>/<frame>.jpg`)
and the history rows not reviewed yet. Each item is given a label (its picture joins the teach folder)
or discarded, one at a time or several at once.

Items are named by strings the page and the API send back: `frame:<label>/<file>` and `history:<id>`.
A name is parsed strictly (a label the label check accepts, a file name the collector makes, a row
id), so no request can reach a file outside the review folder. An item that is gone by the time its
action comes (reviewed in another tab, deleted, pruned) is reported as missing, never an error.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeclf.edge_app import files
from edgeclf.edge_app.collector import FRAME_NAME
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.labelname import check_label, label_problem
from edgeclf.edge_app.web.store import History
from edgeclf.edge_app.web.teaching import Teaching, picture_name

MAX_ITEMS = 200  # items one action may name
ITEM = re.compile(r"^(?:frame:(?P<label>[^/]+)/(?P<name>[^/]+)|history:(?P<id>[1-9][0-9]{0,18}))$")


class BadItem(EdgeClfError):
    """An item name the queue never gives out (answered with 400)."""


@dataclass
class Outcome:
    """What one action did: the items done, and those that no longer exist."""

    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "missing": self.missing}


class Review:
    """The collected frames under `folder` (None: none) and the unreviewed history rows."""

    def __init__(self, folder: Path | None, history: History, teaching: Teaching) -> None:
        self.folder = folder
        self.history = history
        self.teaching = teaching

    def frame_path(self, label: str, name: str) -> Path | None:
        """The collected frame `label/name`, None when the names are not ones the collector makes."""
        if self.folder is None or label_problem(label) or not FRAME_NAME.match(name):
            return None
        return self.folder / label / name

    def frames(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` collected frames, newest first (their names start with their time)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        found = []
        for label_dir in os.scandir(self.folder):
            if not label_dir.is_dir() or label_problem(label_dir.name):
                continue
            with os.scandir(label_dir.path) as entries:
                found += [(e.name, label_dir.name) for e in entries if FRAME_NAME.match(e.name) and e.is_file()]
        found.sort(reverse=True)
        return [{"id": f"frame:{label}/{name}", "predicted": label, "file": name} for name, label in found[:limit]]

    def rows(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` unreviewed history rows, newest first."""
        return [{**e.to_dict(), "id": f"history:{e.id}", "row": e.id} for e in self.history.unreviewed(limit)]

    def _parse(self, items: list[str]) -> list[tuple[str, re.Match[str]]]:
        if not items:
            raise BadItem("no items: choose one or more")
        if len(items) > MAX_ITEMS:
            raise BadItem(f"at most {MAX_ITEMS} items at a time")
        parsed = []
        for item in items:
            match = ITEM.match(str(item))
            if match is None or (match["label"] is not None and self.frame_path(match["label"], match["name"]) is None):
                raise BadItem(f"not a review item: {str(item)[:80]!r}")
            parsed.append((str(item), match))
        return parsed

    def assign(self, items: list[str], label: str) -> Outcome:
        """Put each item's picture in the teach folder under `label`."""
        check_label(label)
        outcome = Outcome()
        for item, match in self._parse(items):
            if match["label"] is not None:
                try:
                    self.teaching.take(label, self.frame_path(match["label"], match["name"]))  # type: ignore[arg-type]
                except FileNotFoundError:
                    outcome.missing.append(item)
                    continue
            else:
                entry = self.history.get(int(match["id"]))
                thumb = None if entry is None or entry.reviewed else self.history.thumb_path(entry.thumb)
                picture = None
                if thumb is not None:
                    with contextlib.suppress(FileNotFoundError):  # the history prunes live thumbnails meanwhile
                        picture = thumb.read_bytes()
                if picture is None:
                    outcome.missing.append(item)
                    continue
                files.write_bytes(self.teaching.folder(label) / picture_name(), picture)
                if not self.history.mark_reviewed(entry.id, label):  # deleted meanwhile: the picture stays taught
                    outcome.missing.append(item)
                    continue
            outcome.done.append(item)
        return outcome

    def discard(self, items: list[str]) -> Outcome:
        """Delete each item: a collected frame's file, a history row and its thumbnail."""
        outcome = Outcome()
        for item, match in self._parse(items):
            if match["label"] is not None:
                path = self.frame_path(match["label"], match["name"])
                try:
                    path.unlink()  # type: ignore[union-attr]
                    gone = True
                except FileNotFoundError:
                    gone = False
            else:
                gone = self.history.delete(int(match["id"]))
            (outcome.done if gone else outcome.missing).append(item)
        return outcome
