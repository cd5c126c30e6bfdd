"""Which model the server answers with, and changing it without a restart: an uploaded file
(POST /api/model), a taught one (Learn), the previous one again (restore), or `--model` read from
disk again (SIGHUP).

Every change goes through `Deployer`: the new file is loaded and must classify a frame before
SharedClassifier.swap puts it in force, so a file that cannot serve never replaces one that can.
The server's *base* is the model Learn teaches: `--model`, or the last upload or reload; a taught
model is never the base (teaching always starts again from the base with the whole teach folder).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclf.edge_app import files, metadata, preprocess
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.web.feed import SharedClassifier, load_model

log = logging.getLogger("edgeclf.web")
KEEP_FILES = 3  # uploaded (and taught) files kept beside the database, besides those in use


class BadModel(EdgeClfError):
    """A file that cannot serve as the classifier (answered with 400; the current model stays)."""


class NoPrevious(EdgeClfError):
    """There is no earlier model to go back to (answered with 409)."""


class BaseChanged(EdgeClfError):
    """An upload or a reload made a new base while Learn taught the old one (answered with 409)."""


@dataclass(frozen=True)
class InForce:
    """A model the server used: its file, its --labels file (None: its metadata), whether it is a base."""

    path: Path
    labels: Path | None
    base: bool


def check_model(path: Path, labels: Path | None = None, runtime: str | None = None) -> tuple[Classifier, str | None]:
    """`path` loaded (into memory, see load_model) and run on one frame, and its sha; BadModel (one line) when
    it cannot serve."""
    try:
        clf, sha = load_model(path, labels, runtime)
        spec = clf.spec
        probs = clf.predict(preprocess.prepare(np.zeros((spec.height, spec.width, 3), np.uint8), spec, "BGR"))
    except EdgeClfError as exc:
        raise BadModel(f"not a usable classifier: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError, RuntimeError...: the file is the cause
        raise BadModel(f"not a usable classifier: {type(exc).__name__}: {exc}") from None
    if probs.shape != (1, len(clf.labels)) or not np.isfinite(probs).all():
        raise BadModel(f"not a usable classifier: {probs.shape[-1]} scores for {len(clf.labels)} labels")
    return clf, sha


def stamp() -> str:
    """The time in UTC, to the millisecond, for file names that sort by time."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"


class Deployer:
    """The model in force, the one before it, and the base Learn teaches; one change at a time."""

    def __init__(
        self,
        shared: SharedClassifier,
        folder: Path,
        model: Path | None = None,
        labels: Path | None = None,
        runtime: str | None = None,
    ) -> None:
        """`folder`: where uploads are kept; `model`: the file SIGHUP reloads (default the one in force), with
        `labels` (--labels: it belongs to `model`, whatever the base is when SIGHUP comes)."""
        self.shared = shared
        self.folder = folder
        self.model = model or shared.clf.path
        self.labels = labels
        self.runtime = runtime
        self.current = InForce(shared.clf.path, labels, True)
        self.base = self.current
        self.previous: InForce | None = None
        self._lock = threading.Lock()

    def _use(self, loaded: tuple[Classifier, str | None], used: InForce) -> Classifier:
        clf, sha = loaded
        self.shared.swap(clf, sha)
        self.previous, self.current = self.current, used
        if used.base:
            self.base = used
        return clf

    def upload(self, data: bytes, filename: str | None = None) -> Classifier:
        """Keep `data` as a model file beside the database, and use it if it classifies; BadModel if not."""
        if not data:
            raise BadModel("empty upload: send a .tflite file")
        stem = re.sub(r"[^\w.-]+", "_", Path(filename or "model").stem).strip("._")[:60] or "model"
        path = self.folder / f"{stem}-{stamp()}.tflite"
        with self._lock:
            files.write_bytes(path, data)
            try:
                loaded = check_model(path, runtime=self.runtime)
            except BadModel:
                path.unlink(missing_ok=True)
                raise
            clf = self._use(loaded, InForce(path, None, True))
            self._prune(self.folder)
        log.info("model: now %s (uploaded); previous %s", path.name, self.previous and self.previous.path.name)
        return clf

    def taught(self, path: Path, base: InForce) -> Classifier:
        """Use a model taught from `base` (the base stays what it was). BaseChanged, and the file deleted, when
        the base is no longer `base`: the model uploaded or reloaded meanwhile must not be replaced by one
        taught from what it replaced."""
        with self._lock:
            if self.base is not base:  # `is`: a SIGHUP reload of the same file is a new base (the file changed)
                path.unlink(missing_ok=True)
                metadata.sidecar_path(path).unlink(missing_ok=True)
                raise BaseChanged(
                    f"the base model changed while Learn ran (now {self.base.path.name}): "
                    "its result was not used; Learn again to teach the new base"
                )
            clf = self._use(check_model(path, runtime=self.runtime), InForce(path, None, False))
            self._prune(path.parent)
        log.info("model: now %s (taught from %s)", path.name, self.base.path.name)
        return clf

    def taught_undone(self) -> Classifier:
        """Go back to the base (the last taught class was removed: there is nothing left to teach)."""
        with self._lock:
            base = self.base
            clf = self._use(check_model(base.path, base.labels, self.runtime), base)
        log.info("model: back to the base %s", base.path.name)
        return clf

    def restore(self) -> Classifier:
        """Go back to the model before the current one (the current one becomes the previous)."""
        with self._lock:
            if self.previous is None:
                raise NoPrevious("there is no previous model to restore")
            back = self.previous
            clf = self._use(check_model(back.path, back.labels, self.runtime), back)
        log.info("model: restored %s", back.path.name)
        return clf

    def reload(self) -> Classifier | None:
        """Read `model` from disk again (SIGHUP); a missing or broken file keeps the current model, logged
        in one line. The reloaded model is the new base."""
        with self._lock:
            try:
                loaded = check_model(self.model, self.labels, self.runtime)
            except BadModel as exc:
                log.error("reload of %s failed, still serving %s: %s", self.model, self.current.path.name, exc)
                return None
            clf = self._use(loaded, InForce(self.model, self.labels, True))
        log.info("model: reloaded %s (sha256 %s)", self.model, self.shared.sha)
        return clf

    def _prune(self, folder: Path) -> None:
        """Delete all but the newest KEEP_FILES models (and sidecars) in `folder`, never one in use."""
        in_use = {m.path.resolve() for m in (self.current, self.previous, self.base) if m is not None}
        models = [p for p in folder.glob("*.tflite") if not p.name.startswith(".")]  # not a write in progress
        models.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in models[KEEP_FILES:]:
            if old.resolve() not in in_use:
                old.unlink(missing_ok=True)
                metadata.sidecar_path(old).unlink(missing_ok=True)
