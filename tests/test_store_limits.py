"""The history's bound for a service that runs for weeks: live rows are capped, uploads are not."""

import sqlite3
from contextlib import closing

import pytest

from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.web.store import History
from tests.fakes import pattern

TOP = [{"label": "cat", "score": 0.9}]


def add(history, source, seed=0):
    entry_id, _ = history.add(pattern(32, 24, seed=seed), source, "cat", 0.9, TOP, "m.tflite")
    return entry_id


def rows(history):
    """(id, source, thumb) of every row, oldest first, read with a connection of the test's own."""
    with closing(sqlite3.connect(history.path)) as db:
        return db.execute("SELECT id, source, thumb FROM predictions ORDER BY id").fetchall()


def thumb_files(history):
    return sorted(p.name for p in history.thumbs.iterdir())


def traced(history, monkeypatch):
    """Every SQL statement the store runs from now on."""
    statements, connect = [], history._connect

    def connect_traced():
        db = connect()
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(history, "_connect", connect_traced)
    return statements


def test_live_rows_beyond_the_cap_go_with_their_thumbnails_and_uploads_stay(tmp_path):
    history = History(tmp_path / "h.db", max_live_rows=20)
    uploads, live = [], []
    for i in range(150):
        if i % 30 == 0:
            uploads.append(add(history, "upload", i))
        live.append(add(history, "live", i))
        assert sum(1 for r in rows(history) if r[1] == "live") < 20 + history.prune_every
    left = rows(history)
    assert [r[0] for r in left if r[1] == "upload"] == uploads  # never pruned, however old
    kept = [r[0] for r in left if r[1] == "live"]
    assert kept == live[-len(kept) :]  # the newest stayed
    assert thumb_files(history) == sorted(r[2] for r in left)  # a thumbnail per row, none without one
    assert history.prune_live(20) == len(kept) - 20
    assert [r[0] for r in rows(history) if r[1] == "live"] == live[-20:]
    assert thumb_files(history) == sorted(r[2] for r in rows(history))


def test_a_cap_below_what_is_there_is_enforced_at_open(tmp_path):
    history = History(tmp_path / "h.db")
    live = [add(history, "live", i) for i in range(30)]
    upload = add(history, "upload")
    capped = History(tmp_path / "h.db", max_live_rows=5)
    assert [r[0] for r in rows(capped)] == live[-5:] + [upload]
    assert len(thumb_files(capped)) == 6


def test_no_cap_by_default_and_zero_is_no_cap(tmp_path, monkeypatch):
    for cap in (None, 0):
        history = History(tmp_path / f"{cap}.db", max_live_rows=cap)
        statements = traced(history, monkeypatch)
        for i in range(30):
            add(history, "live", i)
        assert len(rows(history)) == 30 and not any("DELETE" in s for s in statements)
    with pytest.raises(ValueError, match="max_live_rows"):
        History(tmp_path / "h.db", max_live_rows=-1)


def test_the_cap_costs_no_count_per_add_and_one_delete_every_few_adds(tmp_path, monkeypatch):
    history = History(tmp_path / "h.db", max_live_rows=10_000)
    assert 1 < history.prune_every <= 1000
    statements = traced(history, monkeypatch)
    adds = 3 * history.prune_every
    for i in range(adds):
        add(history, "live", i)
    assert not any("COUNT(" in s.upper() for s in statements)
    prunes = [s for s in statements if "OFFSET" in s.upper()]
    assert 1 <= len(prunes) <= adds // history.prune_every


def test_thumbnails_stay_while_their_rows_do(tmp_path, monkeypatch):
    history = History(tmp_path / "h.db", max_live_rows=2)
    for i in range(2):
        add(history, "live", i)
    connect = history._connect

    def impatient():  # a writer that does not wait 30 s for the lock
        db = connect()
        db.execute("PRAGMA busy_timeout = 50")
        return db

    monkeypatch.setattr(history, "_connect", impatient)
    blocker = sqlite3.connect(history.path)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the delete cannot commit
        with pytest.raises(EdgeClfError, match="locked"):
            history.prune_live(0)
    finally:
        blocker.rollback()
        blocker.close()
    assert len(rows(history)) == 2 and len(thumb_files(history)) == 2
    assert history.prune_live(0) == 2 and rows(history) == [] and thumb_files(history) == []


def test_a_failed_prune_does_not_fail_the_add(tmp_path, monkeypatch, caplog):
    history = History(tmp_path / "h.db", max_live_rows=1)

    def broken(keep):
        raise EdgeClfError("history database error: disk I/O error")

    monkeypatch.setattr(history, "prune_live", broken)
    ids = [add(history, "live", i) for i in range(3)]
    assert len(rows(history)) == 3 and ids == sorted(ids)
    assert "disk I/O error" in caplog.text
