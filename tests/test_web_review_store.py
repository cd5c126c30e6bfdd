"""The history schema's migration (version 1 -> 2: which model answered, and the review mark) and the
store's review operations."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np
import pytest

from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.web import store
from edgeclf.edge_app.web.store import History

V1_SCHEMA = """
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    source TEXT NOT NULL,
    filename TEXT,
    thumb TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    top_json TEXT NOT NULL,
    model TEXT NOT NULL
);
CREATE INDEX predictions_label ON predictions(label);
CREATE INDEX predictions_source ON predictions(source);
PRAGMA user_version = 1;
"""


def version_1_db(path):
    """A database as edgeclf wrote it before schema 2, with one upload row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "thumbs").mkdir()
    (path.parent / "thumbs" / f"{'a' * 32}.jpg").write_bytes(b"\xff\xd8jpeg")
    with closing(sqlite3.connect(path)) as db:
        db.executescript(V1_SCHEMA)
        db.execute(
            "INSERT INTO predictions (created, source, filename, thumb, label, confidence, top_json, model) "
            "VALUES (1.0, 'upload', 'cat.jpg', ?, 'cat', 0.9, '[]', 'old.tflite')",
            (f"{'a' * 32}.jpg",),
        )
        db.commit()
    return path


def columns(path):
    with closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(predictions)")], db.execute(
            "PRAGMA user_version"
        ).fetchone()[0]


def test_a_version_1_database_opens_and_gains_the_columns(tmp_path):
    path = version_1_db(tmp_path / "h" / "history.sqlite3")
    history = History(path)
    names, version = columns(path)
    assert version == store.SCHEMA_VERSION == 2
    assert names[-2:] == ["model_sha", "reviewed"]
    (old,), total = history.page()
    assert total == 1 and old.model == "old.tflite" and old.model_sha is None and old.reviewed is None
    assert old.to_dict()["model_sha"] is None
    added = history.add(np.zeros((8, 8, 3), np.uint8), "upload", "dog", 0.7, [], "new.tflite", model_sha="ab12")
    new = history.page()[0][0]
    assert new.id == added.id and new.model_sha == "ab12"
    History(path)  # opening it again: nothing to migrate, nothing breaks
    assert columns(path) == (names, 2)


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "history.sqlite3"
    History(path)
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 3")
        db.commit()
    with pytest.raises(EdgeClfError, match="newer edgeclf"):
        History(path)


def test_review_marks_and_the_unreviewed_rows(tmp_path):
    history = History(tmp_path / "history.sqlite3")
    ids = [history.add(np.zeros((8, 8, 3), np.uint8), "live", "cat", 0.3, [], "m.tflite").id for _ in range(3)]
    assert [e.id for e in history.unreviewed(10)] == ids[::-1]
    assert history.mark_reviewed(ids[1], "cup") is True
    assert history.mark_reviewed(999, "cup") is False  # a row that no longer exists
    assert [e.id for e in history.unreviewed(10)] == [ids[2], ids[0]]
    assert history.get(ids[1]).reviewed == "cup" and history.get(999) is None
