"""`edgeclf run --mqtt` against a real Mosquitto broker: discovery, debounced state, events, snapshots,
availability on a clean exit and on kill -9, and a broker restarted mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeclf.edge_app import mqttpublish
from edgeclf.edge_app.run import main as run_main
from edgeclf.edge_app.shipped import DEFAULT_MODEL, MODELS_DIR
from edgeclf.edge_app.sources import Frame
from tests.conftest import ROOT, wait_until
from tests.mqtt_broker import Broker, Subscriber, broker  # noqa: F401 - the fixture

CLIP = MODELS_DIR / "samples" / "clip.mp4"
PREFIX = "test/pi"


@pytest.fixture()
def sub(broker):  # noqa: F811
    subscriber = Subscriber(broker.port)
    wait_until(lambda: subscriber.subscribed, 10, "the test's subscription")
    yield subscriber
    subscriber.close()


def retained(port: int, topics: tuple[str, ...], expect: int) -> dict[str, bytes]:
    """What a newly connected client gets: the retained message of each topic (waits for `expect` of them)."""
    late = Subscriber(port, topics)
    try:
        wait_until(lambda: len({t for t, _, r in late.messages if r}) >= expect, 10, f"{expect} retained messages")
        return {t: p for t, p, r in late.messages if r}
    finally:
        late.close()


def summary_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("summary:")]
    return line


def test_run_on_the_clip_publishes_discovery_states_events_and_snapshots(broker, sub, capsys):  # noqa: F811
    argv = ["--source", str(CLIP), "--mqtt", broker.url(), "--mqtt-topic", PREFIX, "--mqtt-min-interval", "0"]
    argv += ["--ha-discovery", "--ha-labels", "cat,dog", "--mqtt-snapshot"]
    assert run_main(argv) == 0
    out, err = capsys.readouterr()
    assert summary_line(err).endswith("mqtt: 0 reconnects, 0 messages dropped"), err
    wait_until(lambda: sub.texts(f"{PREFIX}/availability") == ["online", "offline"], 10, "online, then offline")
    lines = [json.loads(line) for line in out.splitlines()]
    changes = [r["label"] for i, r in enumerate(lines) if i == 0 or r["label"] != lines[i - 1]["label"]]
    assert len(changes) >= 10  # the clip shows ten classes, 8 frames each

    # state: each change of the shown label once (uncertain included), never once per frame
    states = [json.loads(p) for p in sub.on(f"{PREFIX}/state")]
    assert [s["label"] for s in states] == changes and len(states) < len(lines)
    assert states[0]["model"] == DEFAULT_MODEL.name and states[0]["source"] == str(CLIP)
    assert states[0]["score"] == states[0]["top"][0]["score"] > 0.5

    # events: a start and an end per stretch of a label, none for uncertain, ISO 8601 UTC times
    events = [json.loads(p) for p in sub.on(f"{PREFIX}/event")]
    labelled = [c for c in changes if c != "uncertain"]
    assert [e["label"] for e in events if e["type"] == "start"] == labelled
    assert [e["type"] for e in events] == ["start", "end"] * len(labelled)
    for start, end in zip(events[::2], events[1::2]):
        assert start["id"] == end["id"] and end["peak_score"] >= start["score"]
        began, ended = datetime.fromisoformat(end["start"]), datetime.fromisoformat(end["end"])
        assert began.utcoffset() == timedelta(0)
        assert abs((ended - began).total_seconds() - end["duration"]) < 0.002

    # a JPEG snapshot per event, bounded
    snapshots = sub.on(f"{PREFIX}/snapshot")
    assert len(snapshots) == len(labelled)
    for jpeg in snapshots:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= mqttpublish.SNAPSHOT_SIDE
        assert len(jpeg) <= mqttpublish.SNAPSHOT_MAX_BYTES

    # what a client connecting now gets: the retained configs, the last state, 'offline'
    configs = [f"homeassistant/sensor/test_pi/{o}/config" for o in ("label", "score")]
    configs += [f"homeassistant/binary_sensor/test_pi/label_{o}/config" for o in ("cat", "dog")]
    configs += ["homeassistant/camera/test_pi/snapshot/config"]
    kept = retained(broker.port, (f"{PREFIX}/#", "homeassistant/#"), len(configs) + 3)
    assert set(kept) == {*configs, f"{PREFIX}/availability", f"{PREFIX}/state", f"{PREFIX}/snapshot"}
    assert kept[f"{PREFIX}/availability"] == b"offline"
    assert json.loads(kept[f"{PREFIX}/state"])["label"] == changes[-1]
    for topic in configs:
        config = json.loads(kept[topic])
        assert config["availability_topic"] == f"{PREFIX}/availability" and config["unique_id"].startswith("test_pi_")
        assert config["device"]["identifiers"] == ["test_pi"]


def test_the_state_is_debounced_by_min_interval(broker, sub, capsys):  # noqa: F811
    """The clip changes label ten times in about a second: with an interval of an hour only the first state goes
    out, and the last one at the clean exit (the state a change inside the interval left pending)."""
    argv = ["--source", str(CLIP), "--mqtt", broker.url(), "--mqtt-topic", PREFIX, "--mqtt-min-interval", "3600"]
    assert run_main(argv) == 0
    out, _ = capsys.readouterr()
    labels = [json.loads(line)["label"] for line in out.splitlines()]
    wait_until(lambda: sub.texts(f"{PREFIX}/availability") == ["online", "offline"], 10, "online, then offline")
    states = [json.loads(p)["label"] for p in sub.on(f"{PREFIX}/state")]
    assert states == [labels[0], labels[-1]] and labels[0] != labels[-1]
    assert len([e for e in sub.on(f"{PREFIX}/event") if b'"start"' in e]) >= 10  # events are not debounced


def long_video(path: Path, frames: int = 3000) -> Path:
    """A small MJPG clip of the shipped sample images, 8 frames each, over and over: minutes of classifying."""
    samples = [cv2.imread(str(p)) for p in sorted((MODELS_DIR / "samples").glob("*.jpg"))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (32, 32))
    for i in range(frames):
        writer.write(samples[(i // 8) % len(samples)])
    writer.release()
    return path


def test_kill_9_leaves_the_last_will_offline(broker, sub, tmp_path):  # noqa: F811
    video = long_video(tmp_path / "long.avi")
    cmd = [sys.executable, "-m", "edgeclf.edge_app", "--source", str(video), "--no-display", "--mqtt", broker.url()]
    cmd += ["--mqtt-topic", PREFIX, "--mqtt-keepalive", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_until(lambda: sub.texts(f"{PREFIX}/availability") or proc.poll() is not None, 60, "'online'")
        assert sub.texts(f"{PREFIX}/availability") == ["online"], proc.stderr.read()
        wait_until(lambda: sub.on(f"{PREFIX}/state"), 30, "a state")  # classifying now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run: it did not end by itself and say 'offline'
    # the broker publishes the will when the socket closes, or after 1.5 x the keepalive of 2 s at the latest
    wait_until(lambda: sub.texts(f"{PREFIX}/availability") == ["online", "offline"], 15, "the last will")
    assert retained(broker.port, (f"{PREFIX}/availability",), 1) == {f"{PREFIX}/availability": b"offline"}


class CyclingCamera:
    """A live source that never ends: the shipped sample images in turn, 8 frames each, 100 frames a second."""

    def __init__(self) -> None:
        self.name, self.live = "cycling", True
        self.samples = [cv2.imread(str(p)) for p in sorted((MODELS_DIR / "samples").glob("*.jpg"))]
        self.delivered = 0

    def open(self) -> None:
        pass

    def read(self) -> Frame:
        time.sleep(0.01)  # a camera's frame interval
        image = self.samples[(self.delivered // 8) % len(self.samples)]
        self.delivered += 1
        return Frame(image.copy(), self.delivered, self.name)

    def close(self) -> None:
        pass


def test_a_broker_restarted_mid_run(broker, sub, monkeypatch, capsys):  # noqa: F811
    """Stop the broker (it loses every retained message) while the run classifies, wait until the queue of 3 is
    full and messages are dropped, start it again: the run goes on, reconnects, publishes 'online', the discovery
    configs and the current state again, and its summary counts the reconnect and the drops."""
    monkeypatch.setattr("edgeclf.edge_app.run.parse_source", lambda spec, camera: CyclingCamera())
    publishers = []
    start = mqttpublish.Publisher.start

    def recording_start(self, *args, **kwargs):
        publishers.append(self)
        return start(self, *args, **kwargs)

    monkeypatch.setattr(mqttpublish.Publisher, "start", recording_start)
    failures: list[str] = []

    def scenario() -> None:
        try:
            wait_until(lambda: publishers and publishers[0].link and publishers[0].link.connected, 30, "a connection")
            link = publishers[0].link
            wait_until(lambda: len(sub.on(f"{PREFIX}/event")) >= 4, 30, "events before the restart")
            broker.stop()
            wait_until(lambda: not link.connected, 30, "the run to notice the broker went")
            wait_until(lambda: link.drops > 0, 30, "a full queue: messages dropped")
            broker.start()
            wait_until(lambda: link.reconnects == 1, 60, "the run's reconnect")
            wait_until(lambda: sub.texts(f"{PREFIX}/availability").count("online") == 2, 30, "'online' again")
            kept = retained(broker.port, (f"{PREFIX}/#", "homeassistant/#"), 4)
            assert kept[f"{PREFIX}/availability"] == b"online", kept
            assert set(kept) >= {f"{PREFIX}/state", *[f"homeassistant/sensor/test_pi/{o}/config" for o in
                                                      ("label", "score")]}, kept  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported by the test's main thread
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # the run's StopFlag ends it cleanly

    helper = threading.Thread(target=scenario, daemon=True)
    helper.start()
    argv = ["--source", "0", "--mqtt", broker.url(), "--mqtt-topic", PREFIX, "--mqtt-queue", "3"]
    argv += ["--mqtt-min-interval", "3600", "--ha-discovery", "--duration", "120"]  # the hour: states only at connects
    code = run_main(argv)
    helper.join(10)
    err = capsys.readouterr().err
    assert not failures, failures[0] + "\n" + err
    assert code == 130, err  # SIGINT: a clean stop, not a crash
    drops = publishers[0].link.drops
    assert summary_line(err).endswith(f"mqtt: 1 reconnects, {drops} messages dropped") and drops > 0, err
    assert "warning: mqtt: lost the broker" in err and "dropping new ones" in err and "Traceback" not in err
    wait_until(lambda: sub.texts(f"{PREFIX}/availability")[-1:] == ["offline"], 10, "'offline' at the clean exit")
