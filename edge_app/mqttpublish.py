"""The classifier's results on MQTT: PREFIX/state, PREFIX/event, PREFIX/snapshot and Home Assistant's discovery.

`run`'s loop and `serve` hand each classified frame (and `serve` each upload) to a Publisher. It decides what
to send (mqttevents), encodes a snapshot when an event starts, and hands the messages to the MqttLink,
which never blocks. After every (re)connect the link calls back here to publish what a restarted broker has
lost: the discovery configs and the current state (availability 'online' is the link's own).

QoS: events and snapshots are QoS 1 and wait in the link's bounded queue while the broker is away. The state
and the discovery configs are retained 'latest value' messages sent again at each connect, so they go at
QoS 0: queued copies would be sent after the fresh ones at a reconnect and leave a stale state retained.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeclf.edge_app import hadiscovery, preprocess
from edgeclf.edge_app.mqttevents import EventTracker, Shown, StateGate, upload_event
from edgeclf.edge_app.mqttopts import MqttSettings
from edgeclf.edge_app.results import shown_label

if TYPE_CHECKING:
    from edgeclf.edge_app.live import FrameResult
    from edgeclf.edge_app.mqtt import MqttLink

log = logging.getLogger(__name__)

SNAPSHOT_SIDE = 640  # px: the longer side of a snapshot at most (a 1080p frame would be ~300 KB)
SNAPSHOT_MAX_BYTES = 256 * 1024  # a snapshot above this after the lowest quality is not sent
SNAPSHOT_QUALITIES = (80, 60, 40)
DROP_LOG_INTERVAL = 60.0  # s: a camera whose every snapshot is too big says so once a minute, not per event


def snapshot_jpeg(image_bgr: np.ndarray) -> bytes | None:
    """`image_bgr` as a JPEG of at most SNAPSHOT_SIDE px a side and SNAPSHOT_MAX_BYTES; None if it cannot be."""
    cv2 = preprocess._cv2()
    height, width = image_bgr.shape[:2]
    scale = SNAPSHOT_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    for quality in SNAPSHOT_QUALITIES:
        ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(data) <= SNAPSHOT_MAX_BYTES:
            return data.tobytes()
    return None


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


class Publisher:
    """State, events, snapshots and discovery on one broker; `start` connects. Each frame and upload names the
    model that answered it (serve may swap models while it runs)."""

    def __init__(
        self,
        settings: MqttSettings,
        link_factory: Callable[..., MqttLink] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.model = ""  # the model at start(); each frame and upload names the one that answered it
        self._link_factory = link_factory
        self._clock = clock
        self._gate = StateGate(settings.min_interval)
        self._events = EventTracker("")
        self._discovery: list[tuple[str, dict[str, Any]]] = []
        self._current: Shown | None = None
        # held while deciding and handing over a state, here and in the link's thread after a reconnect, so
        # that an older state can never be handed to paho after a newer one
        self._lock = threading.Lock()
        self.link: MqttLink | None = None
        self.closed = False
        self._drop_logged = -math.inf  # clock time of the last 'snapshot dropped' line

    def start(self, model: str, labels: Sequence[str], stop: threading.Event | None = None) -> Publisher:
        """Connect for the model file `model` with these labels (EdgeClfError for a bad --ha-labels, an
        unreachable broker, refused credentials, TLS; see MqttLink.start)."""
        hadiscovery.check_labels(self.settings.ha_labels, labels, model)
        self.model = model
        self._events = EventTracker(model)
        if self.settings.ha_discovery:
            self._discovery = hadiscovery.configs(self.settings, model)
        if self._link_factory is None:
            from edgeclf.edge_app.mqtt import MqttLink

            self._link_factory = MqttLink
        self.link = self._link_factory(self.settings, on_connected=self._on_connected)
        self.link.start(stop)
        return self

    @property
    def drops(self) -> int:
        return self.link.drops if self.link else 0

    @property
    def reconnects(self) -> int:
        return self.link.reconnects if self.link else 0

    def _on_connected(self) -> None:
        """In the link's thread after each CONNACK: discovery configs and the current state, retained."""
        assert self.link is not None
        with self._lock:
            for topic, config in self._discovery:
                self.link.publish(topic, _json(config), qos=0, retain=True)
            if self._current is not None:
                self._gate.mark(self._current.label, self._clock())
                self.link.publish(self.settings.topic("state"), _json(self._current.state()), 0, True)

    def frame(
        self,
        result: FrameResult,
        when: float,
        source: str,
        image: np.ndarray | Callable[[], bytes | None] | None = None,
        model: str | None = None,
    ) -> None:
        """One classified (smoothed) frame taken at Unix time `when`: maybe a state, maybe events. `image` (BGR,
        or a function that returns a JPEG) becomes the snapshot when an event starts and --mqtt-snapshot is on.
        `model` is the file that answered (None: the one of start())."""
        top = tuple(result.top)
        shown = Shown(shown_label(result), float(result.top[0][1]), top, when, source, model or self.model)
        with self._lock:
            if self.closed or self.link is None:
                return
            self._current = shown
            if self._gate.offer(shown.label, self._clock()):
                self.link.publish(self.settings.topic("state"), _json(shown.state()), 0, True)
            events = self._events.update(shown)
            for event in events:
                self.link.publish(self.settings.topic("event"), _json(event), qos=1)
        if self.settings.snapshot and image is not None and any(e["type"] == "start" for e in events):
            jpeg = image() if callable(image) else snapshot_jpeg(image)
            if jpeg is not None and len(jpeg) <= SNAPSHOT_MAX_BYTES:
                self.link.publish(self.settings.topic("snapshot"), jpeg, qos=1, retain=True)
            else:
                self._snapshot_dropped(jpeg)

    def _snapshot_dropped(self, jpeg: bytes | None) -> None:
        """Say (at most once per DROP_LOG_INTERVAL) that an event's snapshot was not sent, and why."""
        now = self._clock()
        if now - self._drop_logged < DROP_LOG_INTERVAL:
            return
        self._drop_logged = now
        limit = SNAPSHOT_MAX_BYTES // 1024
        if jpeg is None:
            why = f"no JPEG of the frame fits in {limit} KB, even at quality {SNAPSHOT_QUALITIES[-1]}"
        else:
            why = f"the JPEG is {len(jpeg):,} bytes, above the limit of {SNAPSHOT_MAX_BYTES:,}"
        log.warning("mqtt: an event's snapshot was dropped: %s (said once a minute)", why)

    def upload(
        self,
        label: str,
        score: float,
        top: list[dict[str, Any]],
        model: str | None = None,
        when: float | None = None,
    ) -> None:
        """`serve`: one classified upload, as an event with source 'upload', naming `model`, the file that
        answered (None: the one of start())."""
        if self.closed or self.link is None:
            return
        event = upload_event(label, score, top, time.time() if when is None else when, model or self.model)
        self.link.publish(self.settings.topic("event"), _json(event), qos=1)

    def close(self) -> None:
        """A clean exit: the state held back by the interval, the end of the open event, then 'offline'."""
        with self._lock:
            if self.closed or self.link is None:
                self.closed = True
                return
            self.closed = True
            current = self._current
            if current is not None:
                if self._gate.pending(current.label):
                    self._gate.mark(current.label, self._clock())
                    self.link.publish(self.settings.topic("state"), _json(current.state()), 0, True)
                for event in self._events.finish(current.time):
                    self.link.publish(self.settings.topic("event"), _json(event), qos=1)
        self.link.close()

    def summary(self) -> str:
        """', mqtt: N reconnects, M messages dropped' for the run's summary line."""
        return f"mqtt: {self.reconnects} reconnects, {self.drops} messages dropped"
