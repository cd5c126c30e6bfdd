"""Prediction history in SQLite (WAL mode) with thumbnails as files beside the database.

The schema is versioned (`PRAGMA user_version`) and created on first start; an older database gains
the columns of each newer version when it opens (MIGRATIONS). A thumbnail is
written (atomically) before its row is committed, and removed if the commit fails, so a crash
never leaves a row without its picture; committed rows survive a kill because SQLite commits
atomically. Live rows (a sampled frame every few seconds, for weeks) can be capped: the oldest go,
with their thumbnails; uploads are never pruned.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeclf.edge_app import files, preprocess
from edgeclf.edge_app.errors import EdgeClfError

SCHEMA_VERSION = 2
THUMB_SIDE = 160
THUMB_NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")
THUMB_TEMP = re.compile(r"^\.[0-9a-f]{32}\.jpg\.[a-z0-9_]+\.tmp\.jpg$")  # files.atomic_write's, of a thumbnail
MAX_ROW_ID = 2**63 - 1  # SQLite's INTEGER: larger Python ints raise OverflowError, not sqlite3.Error
log = logging.getLogger("edgeclf.web")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    source TEXT NOT NULL,
    filename TEXT,
    thumb TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    top_json TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha TEXT,
    reviewed TEXT
);
CREATE INDEX IF NOT EXISTS predictions_label ON predictions(label);
CREATE INDEX IF NOT EXISTS predictions_source ON predictions(source);
"""
# what a database of version N - 1 runs to become version N. Version 2: which model file answered (the name
# alone cannot tell a file reloaded under the same name from the one before) and the Review page's mark
MIGRATIONS = {
    2: ("ALTER TABLE predictions ADD COLUMN model_sha TEXT", "ALTER TABLE predictions ADD COLUMN reviewed TEXT"),
}
COLUMNS = "id, created, source, filename, thumb, label, confidence, top_json, model, model_sha, reviewed"
LIVE = "live"  # the source of the rows the live feed samples, the only ones a cap prunes
PRUNE_BATCH = 500  # rows deleted per transaction: a lowered cap never holds the lock (or memory) for long


def _db_errors(method: Any) -> Any:
    """sqlite3 errors (a locked or broken database) become one-line EdgeClfErrors."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise EdgeClfError(f"history database error: {exc}") from None

    return wrapper


class Added(NamedTuple):
    """What History.add stored: the new row's id and its thumbnail's file name (in thumbs/)."""

    id: int
    thumb: str


@dataclass(frozen=True)
class Entry:
    id: int
    created: float
    source: str
    filename: str | None
    thumb: str
    label: str
    confidence: float
    top: list[dict[str, Any]]
    model: str
    model_sha: str | None = None  # the first 12 hex digits of the model file's SHA-256; None before schema 2
    reviewed: str | None = None  # the label the Review page gave the row; None until then

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "source": self.source,
            "filename": self.filename,
            "thumb": self.thumb,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "top": self.top,
            "model": self.model,
            "model_sha": self.model_sha,
            "reviewed": self.reviewed,
        }


class History:
    """One SQLite file plus a `thumbs/` folder next to it.

    `max_live_rows` caps the rows of the live feed (source 'live'); None or 0: no cap. The oldest live
    rows beyond it are deleted with their thumbnails when the store opens and then every `prune_every`
    live rows added (a tenth of the cap, 1 to 100), so once `add` returns the table holds fewer than
    max_live_rows + prune_every live rows: one indexed query every prune_every adds, no COUNT per add.
    Uploads are never pruned."""

    def __init__(self, path: str | Path, max_live_rows: int | None = None) -> None:
        if max_live_rows is not None and max_live_rows < 0:
            raise ValueError(f"max_live_rows must be 0 (no cap) or more, not {max_live_rows}")
        self.path = Path(path)
        self.thumbs = self.path.parent / "thumbs"
        self.max_live_rows = max_live_rows or None
        self.prune_every = max(1, min(100, (max_live_rows or 0) // 10))
        self._live_added = 0  # live rows added since the last prune
        try:
            self.thumbs.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise EdgeClfError(f"{self.path} was written by a newer edgeclf (schema {version})")
                self._migrate(db, version)
            self._sweep()
        except (sqlite3.Error, OSError) as exc:
            raise EdgeClfError(f"cannot open the history database {self.path}: {exc}") from None
        if self.max_live_rows is not None:
            pruned = self.prune_live(self.max_live_rows)  # a cap lowered since the last run
            if pruned:
                log.info("history: removed the %d oldest live entries beyond %d", pruned, self.max_live_rows)

    def _migrate(self, db: sqlite3.Connection, version: int) -> None:
        """Create the schema, or bring a database of an older `version` up to SCHEMA_VERSION, in one
        transaction: a crash half-way leaves the old version, which the next start migrates again."""
        has_table = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'predictions'").fetchone()
        with db:
            db.execute("BEGIN")
            if has_table and version >= 1:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step]:
                        db.execute(statement)
                if version < SCHEMA_VERSION:
                    log.info("history: %s migrated from schema %d to %d", self.path, version, SCHEMA_VERSION)
            else:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _sweep(self) -> None:
        """Remove what a killed process left in thumbs/: thumbnails whose row was never committed and
        atomic_write's temp files. Only names this store makes are touched; it runs before this process
        writes any, and one server uses a database at a time."""
        with closing(self._connect()) as db:
            referenced = {row[0] for row in db.execute("SELECT thumb FROM predictions")}
        removed = {"orphan thumbnail": 0, "temporary file": 0}
        with os.scandir(self.thumbs) as entries:
            for entry in entries:
                if THUMB_NAME.match(entry.name):
                    if entry.name in referenced:
                        continue
                    kind = "orphan thumbnail"
                elif THUMB_TEMP.match(entry.name):
                    kind = "temporary file"
                else:
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    os.unlink(entry.path)
                except OSError:
                    continue
                removed[kind] += 1
        if any(removed.values()):
            counts = " and ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in removed.items())
            log.warning("history: removed %s left by a killed process from %s", counts, self.thumbs)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def add(
        self,
        image_bgr: np.ndarray,
        source: str,
        label: str,
        confidence: float,
        top: list[dict[str, Any]],
        model: str,
        filename: str | None = None,
        model_sha: str | None = None,
    ) -> Added:
        """Store a thumbnail and a row; its id and the thumbnail's name. A live row may prune the
        oldest live rows beyond `max_live_rows`; a prune that fails is logged, the row stays added."""
        cv2 = preprocess._cv2()
        h, w = image_bgr.shape[:2]
        scale = THUMB_SIDE / max(h, w)
        small = cv2.resize(
            image_bgr,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST,
        )
        ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise EdgeClfError("could not encode the thumbnail")
        thumb = f"{uuid.uuid4().hex}.jpg"  # never the uploaded name
        files.write_bytes(self.thumbs / thumb, data.tobytes())
        try:
            with closing(self._connect()) as db, db:
                cur = db.execute(
                    "INSERT INTO predictions (created, source, filename, thumb, label, confidence, top_json, model, "
                    "model_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), source, filename, thumb, label, confidence, json.dumps(top), model, model_sha),
                )
                entry_id = int(cur.lastrowid)
        except Exception as exc:
            (self.thumbs / thumb).unlink(missing_ok=True)  # no picture without its row
            if isinstance(exc, sqlite3.Error):
                raise EdgeClfError(f"could not save the prediction: {exc}") from None
            raise
        if source == LIVE and self.max_live_rows is not None:
            self._live_added += 1
            if self._live_added >= self.prune_every:
                self._live_added = 0
                try:
                    self.prune_live(self.max_live_rows)
                except EdgeClfError as exc:  # tried again prune_every rows later
                    log.warning("history: pruning old live entries failed: %s", exc)
        return Added(entry_id, thumb)

    @_db_errors
    def prune_live(self, keep: int) -> int:
        """Delete the live rows older than the newest `keep`, then their thumbnails; how many went.

        Row ids only grow (AUTOINCREMENT), so the oldest live rows are those at or below one id: each
        batch is deleted in one transaction, and its thumbnail files only after that commits (a crash
        between leaves files without rows, which the next start sweeps, never rows without files)."""
        with closing(self._connect()) as db:
            newest_gone = db.execute(
                "SELECT id FROM predictions WHERE source = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (LIVE, max(keep, 0))
            ).fetchone()
            if newest_gone is None:
                return 0
            removed = 0
            while True:
                batch = db.execute(
                    "SELECT id, thumb FROM predictions WHERE source = ? AND id <= ? ORDER BY id LIMIT ?",
                    (LIVE, newest_gone[0], PRUNE_BATCH),
                ).fetchall()
                if not batch:
                    return removed
                with db:
                    db.execute("DELETE FROM predictions WHERE source = ? AND id <= ?", (LIVE, batch[-1][0]))
                for _, thumb in batch:
                    if THUMB_NAME.match(thumb):
                        with suppress(OSError):  # its row is gone: the sweep at the next start removes it
                            (self.thumbs / thumb).unlink(missing_ok=True)
                removed += len(batch)

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> Entry:
        return Entry(*row[:7], json.loads(row[7]), *row[8:])

    @_db_errors
    def before(self, entry_id: int | None, limit: int, label: str | None = None) -> list[Entry]:
        """Up to `limit` entries older than `entry_id` (all when None), newest first."""
        clauses, args = [], []
        if entry_id is not None:
            entry_id = min(entry_id, MAX_ROW_ID)
            clauses.append("id < ?")
            args.append(entry_id)
        if label:
            clauses.append("label = ?")
            args.append(label)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with closing(self._connect()) as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM predictions {where} ORDER BY id DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        return [self._entry(r) for r in rows]

    @_db_errors
    def page(self, page: int = 1, per_page: int = 20, label: str | None = None) -> tuple[list[Entry], int]:
        """Newest first; (entries of this page, total matching)."""
        where, args = ("WHERE label = ?", [label]) if label else ("", [])
        offset = (max(page, 1) - 1) * per_page
        with closing(self._connect()) as db:
            total = db.execute(f"SELECT COUNT(*) FROM predictions {where}", args).fetchone()[0]
            if offset > MAX_ROW_ID:  # past any row there can be
                return [], int(total)
            rows = db.execute(
                f"SELECT {COLUMNS} FROM predictions {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*args, per_page, offset],
            ).fetchall()
        return [self._entry(r) for r in rows], int(total)

    @_db_errors
    def labels(self) -> list[str]:
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT DISTINCT label FROM predictions ORDER BY label")]

    @_db_errors
    def delete(self, entry_id: int) -> bool:
        """Remove a row and its thumbnail; False when there is no such row."""
        if not 0 < entry_id <= MAX_ROW_ID:
            return False
        with closing(self._connect()) as db, db:
            row = db.execute("SELECT thumb FROM predictions WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM predictions WHERE id = ?", (entry_id,))
        (self.thumbs / row[0]).unlink(missing_ok=True)
        return True

    @_db_errors
    def get(self, entry_id: int) -> Entry | None:
        """The row `entry_id`, None when there is none."""
        if not 0 < entry_id <= MAX_ROW_ID:
            return None
        with closing(self._connect()) as db:
            row = db.execute(f"SELECT {COLUMNS} FROM predictions WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else self._entry(row)

    @_db_errors
    def unreviewed(self, limit: int, before: int | None = None) -> list[Entry]:
        """Up to `limit` rows the Review page has not labelled yet, older than `before`, newest first."""
        with closing(self._connect()) as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM predictions WHERE reviewed IS NULL AND id < ? ORDER BY id DESC LIMIT ?",
                (min(before or MAX_ROW_ID, MAX_ROW_ID), limit),
            ).fetchall()
        return [self._entry(r) for r in rows]

    @_db_errors
    def mark_reviewed(self, entry_id: int, label: str) -> bool:
        """Note that the row's picture joined the teach data as `label`; False when there is no such row."""
        if not 0 < entry_id <= MAX_ROW_ID:
            return False
        with closing(self._connect()) as db, db:
            return db.execute("UPDATE predictions SET reviewed = ? WHERE id = ?", (label, entry_id)).rowcount == 1

    def thumb_path(self, name: str) -> Path | None:
        """The file of a server-generated thumbnail name, None for anything else."""
        if not THUMB_NAME.match(name):
            return None
        path = self.thumbs / name
        return path if path.is_file() else None
