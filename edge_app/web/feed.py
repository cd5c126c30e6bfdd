"""One classifier shared by the web requests and the camera loop, and the live camera feed.

The lock is held for a single inference, so a request never waits for more than one camera
frame's inference and the camera loop never waits for more than one request's. The same lock
guards the swap to another model (Learn, POST /api/model, SIGHUP): the next frame of every caller
uses the new one, and each result names the model that made it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.live import FrameResult, FrameStep
from edgeclf.edge_app.notify import Notifier
from edgeclf.edge_app.overlay import annotate
from edgeclf.edge_app.results import frame_json
from edgeclf.edge_app.sources import FrameSource

log = logging.getLogger(__name__)


SHA_CHARS = 12  # of the model file's SHA-256 kept in the history: enough to tell two files apart


def file_sha(path: Path) -> str | None:
    """The first SHA_CHARS hex digits of the file's SHA-256; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()[:SHA_CHARS]


def bytes_sha(data: bytes) -> str:
    """file_sha of a file's bytes already read."""
    return hashlib.sha256(data).hexdigest()[:SHA_CHARS]


def load_model(path: Path, labels: Path | None = None, runtime: str | None = None) -> tuple[Classifier, str | None]:
    """A Classifier of the file's bytes read into memory, and their sha.

    The runtimes map a model given by its path into memory: a file then rewritten in place (`cp new.tflite
    model.tflite` truncates it first) kills the server with SIGBUS at its next frame. Read into memory, the
    file on disk can be replaced any way, and SIGHUP then loads the new one."""
    try:
        data = path.read_bytes()
    except OSError:
        return Classifier(path, labels, runtime), None  # the runtime's own one-line error (not found...)
    return Classifier(path, labels, runtime, content=data), bytes_sha(data)


class Answer(NamedTuple):
    """A classified frame and the model that answered: its file name and SHA-256 prefix."""

    result: FrameResult
    model: str
    model_sha: str | None


class SharedClassifier:
    """A Classifier behind a lock, with one FrameStep per caller kind (uploads are not smoothed)."""

    def __init__(self, clf: Classifier, top_k: int = 5, threshold: float = 0.5, sha: str | None = None) -> None:
        self.lock = threading.Lock()
        self.threshold = threshold
        self.top_k = top_k
        self._install(clf, sha if sha is not None else file_sha(clf.path))

    def _install(self, clf: Classifier, sha: str | None) -> None:
        self.clf, self.sha = clf, sha
        self._upload = FrameStep(clf, self.top_k, self.threshold, smooth=1)
        self._live = FrameStep(clf, self.top_k, self.threshold, smooth=5)  # a new model starts a new average

    def swap(self, clf: Classifier, sha: str | None = None) -> Classifier:
        """Use `clf` from the next frame on; the classifier it replaces."""
        sha = sha if sha is not None else file_sha(clf.path)  # read before the lock: a frame never waits on it
        with self.lock:
            old = self.clf
            self._install(clf, sha)
        return old

    def classify(self, image_bgr: np.ndarray, live: bool = False) -> FrameResult:
        return self.answer(image_bgr, live).result

    def answer(self, image_bgr: np.ndarray, live: bool = False) -> Answer:
        """The result and the model that made it, read under the same lock (a swap cannot fall between)."""
        with self.lock:
            result = (self._live if live else self._upload)(image_bgr)
            return Answer(result, self.clf.path.name, self.sha)


# frames in a row that fail to classify or encode before the feed gives up (a single bad frame is skipped)
MAX_FAILED_FRAMES = 30


class LiveFeed:
    """Reads the camera in the background, classifies the newest frame, keeps the latest JPEG."""

    def __init__(
        self,
        shared: SharedClassifier,
        source: FrameSource,
        history: Any = None,
        sample_every: float = 0.0,
        retries: int = 5,
        notifier: Notifier | None = None,
        on_give_up: Callable[[str], None] | None = None,
        give_up_after: float | None = None,
    ) -> None:
        self.shared = shared
        self.source = source
        self.history = history
        self.sample_every = sample_every
        self.grabber = Grabber(source, retries=retries, give_up_after=give_up_after)
        self.notifier = notifier or Notifier({})  # fed per classified frame: READY=1, then WATCHDOG=1
        self.on_give_up = on_give_up  # called when a live source failed for good (serve then exits 1)
        self._history_warned = -math.inf
        self.jpeg: bytes | None = None
        self.image: np.ndarray | None = None  # the newest frame as the camera gave it (the Teach page saves it)
        self.result: FrameResult | None = None
        self.model: str | None = None  # the model file that answered `result` (serve --mqtt names it)
        self.fps = 0.0
        self.frames = 0
        self.error: str | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeclf-live", daemon=True)

    def start(self) -> LiveFeed:
        self.grabber.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        cv2 = preprocess._cv2()
        self._last = self._last_sample = time.monotonic()
        failed = 0  # frames in a row that could not be shown
        while not self._stop.is_set():
            frame = self.grabber.next_frame(0.5)
            if frame is None:
                if self.grabber.ended:
                    self._stopped(self.grabber.error or "the source ended", failure=self.grabber.error is not None)
                    break
                silent = self.grabber.stuck_for()
                if silent is not None:
                    self._stopped(f"no frame for {silent:.0f} s from {self.source.name}: the capture is stuck")
                    break
                continue
            try:
                self._show(frame, cv2)
                failed = 0
            except Exception as exc:  # noqa: BLE001 - a cv2 error...: skip the frame; the page says so if it lasts
                reason = str(exc) if isinstance(exc, EdgeClfError) else f"{type(exc).__name__}: {exc}"
                failed += 1
                if failed == 1:
                    log.warning("live feed: a frame failed: %s", reason)
                if failed >= MAX_FAILED_FRAMES:
                    self._stopped(f"{failed} frames in a row failed: {reason}")
                    break

    def _stopped(self, reason: str, failure: bool = True) -> None:
        """The feed ends: say why on the page; a failure of a live source ends the server (on_give_up)."""
        self.error = reason
        log.warning("live feed stopped: %s", reason)
        if failure and self.source.live and self.on_give_up is not None and not self._stop.is_set():
            self.on_give_up(reason)

    def _show(self, frame: Any, cv2: Any) -> None:
        """Classify one frame, publish its annotated JPEG, and sample it to the history when due."""
        result, model, sha = self.shared.answer(frame.for_model, live=True)
        self.notifier.frame()
        now = time.monotonic()
        rate = 1.0 / max(now - self._last, 1e-6)
        self.fps = 0.9 * self.fps + 0.1 * rate if self.fps else rate
        self._last = now
        shown = annotate(frame.image, result.top, result.uncertain, result.infer_ms, self.fps)
        ok, data = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, 80])
        with self._cond:
            self.result, self.model, self.image, self.frames = result, model, frame.image, self.frames + 1
            if ok:
                self.jpeg = data.tobytes()
            self._cond.notify_all()
        if self.history is not None and self.sample_every and now - self._last_sample >= self.sample_every:
            self._last_sample = now
            shown = frame_json(result)
            try:
                self.history.add(
                    frame.image, "live", shown["label"], result.top[0][1], shown["top"], model, model_sha=sha
                )
            except EdgeClfError as exc:  # a full disk: the live view goes on; said once a minute
                if now - self._history_warned >= 60:
                    self._history_warned = now
                    log.warning("live feed: a frame could not be stored in the history: %s", exc)

    def latest(self) -> tuple[int, FrameResult | None, str | None, np.ndarray | None]:
        """The frame count, the newest result, the model that answered it and its camera frame, read together."""
        with self._cond:
            return self.frames, self.result, self.model, self.image

    def wait_jpeg(self, after: int, timeout: float = 2.0) -> tuple[bytes | None, int]:
        """The newest JPEG once a frame newer than `after` exists (or the timeout passed)."""
        with self._cond:
            self._cond.wait_for(lambda: self.frames > after or self._stop.is_set(), timeout)
            return self.jpeg, self.frames

    def wait_image(self, after: int, timeout: float = 2.0) -> tuple[np.ndarray | None, int]:
        """The newest camera frame (unannotated) once a frame newer than `after` exists (or the timeout passed)."""
        with self._cond:
            self._cond.wait_for(lambda: self.frames > after or self._stop.is_set(), timeout)
            return self.image, self.frames

    def state(self) -> dict[str, Any]:
        """What the Live page and /api/live show: the source, frame count, FPS, the latest label and top-k
        (None and [] before the first frame), and why the feed stopped (None while it runs)."""
        r = self.result
        shown = {"label": None, "top": []} if r is None else frame_json(r)
        return {
            "source": self.source.name,
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "label": shown["label"],
            "top": shown["top"],
            "error": self.error,
        }

    @property
    def running(self) -> bool:
        return self.error is None and not self._stop.is_set()

    def request_stop(self) -> None:
        """Tell the loop and the MJPEG streams to end now, without waiting (a signal handler calls it)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop and the streams, and release the camera; a driver stuck in a read is left after `timeout`."""
        self.request_stop()
        self.grabber.stop(timeout=timeout)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
