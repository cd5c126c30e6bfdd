"""The Review page and its API: collected frames (`run --collect`'s folder) and unreviewed history rows,
labelled into the teach folder or discarded, one or several at once; items that no longer exist, and
item names that try to leave the review folder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeclf.edge_app.collector import frame_name
from edgeclf.edge_app.web.serve import ServeConfig, make_app
from tests.conftest import ROOT

pytest.importorskip("flask")
SHIP = (ROOT / "models" / "samples" / "ship.jpg").read_bytes()


def collected(folder, label, n, start=0):
    (folder / label).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, start + n):
        name = frame_name(1_700_000_000 + i, i)
        cv2.imwrite(str(folder / label / name), np.full((32, 32, 3), 10 * i, np.uint8))
        names.append(f"frame:{label}/{name}")
    return names


@pytest.fixture()
def setup(shipped_models, tmp_path):
    review_dir = tmp_path / "collect"
    frames = collected(review_dir, "cat", 3) + collected(review_dir, "T-shirt_top", 2, start=3)
    config = ServeConfig(model=shipped_models["default"], db=tmp_path / "db" / "h.sqlite3", review_dir=review_dir)
    app, _, _ = make_app(config)
    app.testing = True
    client = app.test_client()
    rows = [
        client.post("/api/predict", data=SHIP, content_type="application/octet-stream").get_json()["id"]
        for _ in range(3)
    ]
    return client, frames, [f"history:{r}" for r in rows], review_dir, tmp_path / "db" / "teach"


def test_the_queue_lists_frames_newest_first_and_the_rows(setup):
    client, frames, rows, _, _ = setup
    state = client.get("/api/review").get_json()
    assert [f["id"] for f in state["frames"]] == frames[::-1]
    assert [r["id"] for r in state["history"]] == rows[::-1]
    assert state["history"][0]["model_sha"] and state["frames"][0]["predicted"] == "T-shirt_top"
    page = client.get("/review")
    assert page.status_code == 200 and page.data.count(b'name="items"') == 8
    first = state["frames"][0]
    img = client.get(f"/review/frames/{first['predicted']}/{first['file']}")
    assert img.status_code == 200 and img.data[:2] == b"\xff\xd8"


def test_label_one_then_several_and_they_leave_the_queue(setup):
    client, frames, rows, review_dir, teach_dir = setup
    one = client.post("/api/review/label", json={"items": frames[0], "label": "cup"})
    assert one.status_code == 200 and one.get_json() == {"done": [frames[0]], "missing": []}
    many = client.post("/api/review/label", json={"items": [frames[1], rows[0], rows[1]], "label": "cup"})
    assert many.get_json()["done"] == [frames[1], rows[0], rows[1]]
    assert len(list((teach_dir / "cup").iterdir())) == 4
    assert sorted(p.name for p in (review_dir / "cat").iterdir()) == [frames[2].split("/")[1]]  # moved out
    state = client.get("/api/review").get_json()
    assert [r["id"] for r in state["history"]] == [rows[2]]
    assert client.get("/api/history").get_json()["total"] == 3  # labelled rows stay in the history
    assert client.get("/api/teach").get_json()["labels"] == [{"label": "cup", "images": 4}]


def test_discard_in_bulk_with_the_page_form(setup):
    client, frames, rows, review_dir, teach_dir = setup
    page = client.post("/review", data={"action": "discard", "items": [frames[3], frames[4], rows[2]]})
    assert page.status_code == 200 and b"3 item(s) discarded" in page.data
    assert not (review_dir / "T-shirt_top").exists() or not any((review_dir / "T-shirt_top").iterdir())
    assert client.get("/api/history").get_json()["total"] == 2
    assert not teach_dir.exists() or not any(teach_dir.iterdir())


def test_items_that_no_longer_exist(setup):
    client, frames, rows, review_dir, _ = setup
    assert client.post("/api/review/discard", json={"items": [frames[0], rows[0]]}).status_code == 200
    gone = client.post("/api/review/label", json={"items": [frames[0], rows[0]], "label": "cup"})
    assert gone.status_code == 404 and frames[0] in gone.get_json()["error"]
    again = client.post("/api/review/discard", json={"items": [frames[0]]})
    assert again.status_code == 404
    mixed = client.post("/api/review/discard", json={"items": [frames[0], frames[1], "history:999999"]})
    assert mixed.status_code == 200
    assert mixed.get_json() == {"done": [frames[1]], "missing": [frames[0], "history:999999"]}
    page = client.post("/review", data={"action": "label", "label": "cup", "items": [frames[1], frames[2]]})
    assert page.status_code == 200 and b"1 were already gone" in page.data
    assert client.post("/review", data={"action": "label", "label": "cup", "items": [rows[0]]}).status_code == 404


@pytest.mark.parametrize(
    "item",
    [
        "frame:../etc/passwd",
        "frame:cat/../../h.sqlite3",
        "frame:cat/notes.txt",
        "frame:../cat/20231114T221320000000-000000.jpg",
        "frame:.hidden/20231114T221320000000-000000.jpg",
        "history:0",
        "history:-1",
        "history:abc",
        "thumbs:x",
        "",
    ],
)
def test_item_names_that_leave_the_folder_are_400(setup, item):
    client, _, _, review_dir, _ = setup
    r = client.post("/api/review/discard", json={"items": [item]})
    assert r.status_code == 400, r.get_json()
    assert len(list(review_dir.rglob("*.jpg"))) == 5


@pytest.mark.parametrize("label", ["../x", "a/b", ".x", ""])
def test_labels_with_path_characters_are_refused(setup, label, tmp_path):
    client, frames, _, review_dir, _ = setup
    r = client.post("/api/review/label", json={"items": [frames[0]], "label": label})
    assert r.status_code == 400 and r.get_json()["error"].startswith("the label")
    assert len(list(review_dir.rglob("*.jpg"))) == 5 and not (tmp_path / "db" / "x").exists()


def test_without_a_review_dir_the_page_says_how(shipped_models, tmp_path):
    app, _, _ = make_app(ServeConfig(model=shipped_models["default"], db=tmp_path / "h.sqlite3"))
    client = app.test_client()
    page = client.get("/review")
    assert page.status_code == 200 and b'id="no-review-dir"' in page.data
    assert client.get("/api/review").get_json()["frames"] == []
    assert client.get("/review/frames/cat/20231114T221320000000-000000.jpg").status_code == 404


def test_a_thumbnail_pruned_while_its_row_is_labelled_is_missing(setup, monkeypatch):
    """The history prunes live rows' thumbnails in another thread: one gone between the check and the read
    is an item that no longer exists (404), as a deleted row is, not a 500."""
    from edgeclf.edge_app.web.store import History

    client, _, rows, _, teach_dir = setup
    found = History.thumb_path

    def pruned_meanwhile(self, name):
        path = found(self, name)
        if path is not None:
            path.unlink()  # what prune_live does between thumb_path's check and the read
        return path

    monkeypatch.setattr(History, "thumb_path", pruned_meanwhile)
    r = client.post("/api/review/label", json={"items": [rows[0]], "label": "cup"})
    assert r.status_code == 404 and r.get_json() == {"error": f"no longer there: {rows[0]}"}
    mixed = client.post("/api/review/label", json={"items": [rows[1], rows[2]], "label": "cup"})
    assert mixed.status_code == 404
    assert not (teach_dir / "cup").exists() or not any((teach_dir / "cup").iterdir())  # no empty picture taught
