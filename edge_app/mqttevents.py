"""What the classifier tells the house, as plain data (no MQTT here): the debounced state and the events.

StateGate lets PREFIX/state through when the shown label changes (a score falling below the threshold
changes it to 'uncertain'), at most once per min_interval seconds: a change inside the interval goes out
when the interval is up, if it still holds then. EventTracker turns the shown labels into one 'start'
and one 'end' message per stretch of a label; 'uncertain' starts none.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgeclf.edge_app.results import SCORE_DIGITS, UNCERTAIN


def iso(timestamp: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds: 2026-11-28T10:03:26.123+00:00."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Shown:
    """One classified frame as published: the shown label, its top score and top-k, when and from where."""

    label: str
    score: float
    top: tuple[tuple[str, float], ...]
    time: float  # Unix time of the frame
    source: str
    model: str = ""  # the model file that answered (serve swaps models while it runs); "" for the tracker's

    def state(self) -> dict[str, Any]:
        """PREFIX/state's JSON."""
        return {
            "label": self.label,
            "score": round(self.score, SCORE_DIGITS),
            "top": [{"label": name, "score": round(p, SCORE_DIGITS)} for name, p in self.top],
            "time": iso(self.time),
            "source": self.source,
            "model": self.model,
        }


class StateGate:
    """Which frames become PREFIX/state: a change of label, at most once per `min_interval` seconds."""

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self.published: str | None = None  # the label last let through
        self._at = -math.inf  # monotonic time of that

    def offer(self, label: str, now: float) -> bool:
        """True when `label` (seen at monotonic time `now`) is to be published now."""
        if label == self.published or now - self._at < self.min_interval:
            return False
        self.mark(label, now)
        return True

    def mark(self, label: str, now: float) -> None:
        """Record that `label` was published at `now` (also by a reconnect, which sends the current state)."""
        self.published, self._at = label, now

    def pending(self, label: str) -> bool:
        """Whether `label` differs from the published one (a change held back by the interval)."""
        return label != self.published


@dataclass
class _Open:
    id: str
    label: str
    start: float
    peak: float
    source: str
    model: str


class EventTracker:
    """Start and end messages for each stretch of one label; the end carries duration and peak score. Both name
    the model that answered the stretch's first frame (`model` when the frame does not say)."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self.open: _Open | None = None

    def update(self, shown: Shown) -> list[dict[str, Any]]:
        """The messages this frame causes: an 'end' when the open label is gone, a 'start' for a new one."""
        messages = []
        if self.open is not None and shown.label != self.open.label:
            messages.append(self._end(shown.time))
        if self.open is None and shown.label != UNCERTAIN:
            model = shown.model or self.model
            self.open = _Open(uuid.uuid4().hex[:12], shown.label, shown.time, shown.score, shown.source, model)
            messages.append(
                {
                    "type": "start",
                    "id": self.open.id,
                    "label": shown.label,
                    "start": iso(shown.time),
                    "score": round(shown.score, SCORE_DIGITS),
                    "source": shown.source,
                    "model": model,
                }
            )
        elif self.open is not None:
            self.open.peak = max(self.open.peak, shown.score)
        return messages

    def finish(self, when: float) -> list[dict[str, Any]]:
        """The 'end' of the open event, if any, at `when` (the run stops)."""
        return [] if self.open is None else [self._end(when)]

    def _end(self, when: float) -> dict[str, Any]:
        event, self.open = self.open, None
        assert event is not None
        return {
            "type": "end",
            "id": event.id,
            "label": event.label,
            "start": iso(event.start),
            "end": iso(when),
            "duration": round(max(0.0, when - event.start), 3),
            "peak_score": round(event.peak, SCORE_DIGITS),
            "source": event.source,
            "model": event.model,
        }


def upload_event(label: str, score: float, top: list[dict[str, Any]], when: float, model: str) -> dict[str, Any]:
    """PREFIX/event for one classified upload of `serve` (source 'upload')."""
    return {
        "type": "upload",
        "id": uuid.uuid4().hex[:12],
        "label": label,
        "score": round(score, SCORE_DIGITS),
        "top": top,
        "time": iso(when),
        "source": "upload",
        "model": model,
    }
