"""MQTT without a broker: the options and URLs, the debounced state, the events, Home Assistant's configs."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta

import pytest

from edgeclf.edge_app import hadiscovery, mqttopts
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.mqttevents import EventTracker, Shown, StateGate
from edgeclf.edge_app.mqttopts import MqttSettings
from edgeclf.edge_app.run import main as run_main

SAMPLE = "models/samples/cat.jpg"


def settings_of(argv, environ=None, publishing=True):
    parser = argparse.ArgumentParser()
    mqttopts.add_arguments(parser, publishing)
    parser.error = lambda message: (_ for _ in ()).throw(ValueError(message))  # usage errors as exceptions
    return mqttopts.settings(parser, parser.parse_args(argv), environ or {})


def test_urls_become_settings():
    s = settings_of(["--mqtt", "mqtt://broker.lan"])
    assert (s.host, s.port, s.tls, s.username, s.password) == ("broker.lan", 1883, False, None, None)
    s = settings_of(["--mqtt", "mqtts://ha:p%40ss@10.0.0.2:8884", "--mqtt-topic", "home/door"])
    assert (s.host, s.port, s.tls, s.username, s.password) == ("10.0.0.2", 8884, True, "ha", "p@ss")
    assert s.prefix == "home/door" and s.topic("state") == "home/door/state" and s.node_id == "home_door"
    assert s.url == "mqtts://ha@10.0.0.2:8884"  # never the password
    assert "p@ss" not in repr(s)
    assert settings_of(["--mqtt", "mqtts://h"]).port == 8883
    assert settings_of([]) is None


def test_the_password_comes_from_the_environment_when_the_url_has_none():
    env = {mqttopts.PASSWORD_ENV: "from-env"}
    assert settings_of(["--mqtt", "mqtt://ha@h"], env).password == "from-env"
    assert settings_of(["--mqtt", "mqtt://ha:given@h"], env).password == "given"
    assert settings_of(["--mqtt", "mqtt://h"], env).password is None  # MQTT has no password without a user


def test_the_default_prefix_is_the_hostname(monkeypatch):
    monkeypatch.setattr(mqttopts.socket, "gethostname", lambda: "kitchen-pi.local")
    assert settings_of(["--mqtt", "mqtt://h"]).prefix == "edgeclf/kitchen-pi"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "expected mqtt://"),
        ("mqtt://", "no broker host"),
        ("mqtt://h:99999", "Port out of range"),
        ("mqtt://h:port", "Port could not be cast"),
        ("mqtt://h/edgeclf", "no path"),
        ("mqtt://u:secret@h/x", "mqtt://u:***@h/x"),  # the password is not echoed
    ],
)
def test_bad_urls_are_one_line_errors(url, message):
    with pytest.raises(EdgeClfError, match=None) as error:
        settings_of(["--mqtt", url])
    assert message in str(error.value) and "secret" not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mqtt", "mqtt://h", "--mqtt-topic", "a/+/b"], "wildcards"),
        (["--mqtt", "mqtt://h", "--mqtt-topic", "a/#"], "wildcards"),
        (["--mqtt", "mqtt://h", "--mqtt-topic", "/a"], "empty"),
        (["--mqtt-topic", "x"], "--mqtt-topic goes with --mqtt URL"),
        (["--ha-discovery", "--mqtt-snapshot"], "--mqtt-snapshot, --ha-discovery go with --mqtt URL"),
        (["--mqtt", "mqtt://h", "--ha-labels", "cat"], "--ha-labels goes with --ha-discovery"),
        (["--mqtt", "mqtt://h", "--mqtt-min-interval", "-1"], "--mqtt-min-interval must be 0 or more"),
        (["--mqtt", "mqtt://h", "--mqtt-queue", "0"], "--mqtt-queue must be at least 1"),
        (["--mqtt", "mqtt://h", "--mqtt-keepalive", "0"], "--mqtt-keepalive must be 1 to 65535"),
    ],
)
def test_usage_errors(argv, message, capsys):
    try:
        settings_of(argv)
    except (ValueError, SystemExit) as exc:  # parser.error (our stub) or argparse's type errors (exit 2)
        text = str(exc) if isinstance(exc, ValueError) else capsys.readouterr().err
        assert message in text, text
    else:
        pytest.fail(f"{argv} was accepted")


def test_a_wildcard_topic_is_exit_2_from_run(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main(["--source", SAMPLE, "--mqtt", "mqtt://127.0.0.1", "--mqtt-topic", "edgeclf/#"])
    assert exit_.value.code == 2 and "'+' and '#' are wildcards" in capsys.readouterr().err


def test_a_bad_url_is_exit_1_and_one_line_from_run(capsys):
    assert run_main(["--source", SAMPLE, "--mqtt", "mqtt:/broker"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == ["error: --mqtt mqtt:/broker: no broker host"], err


def test_a_bad_url_with_mqtt_optional_warns_and_classifies(capsys):
    assert run_main(["--source", SAMPLE, "--mqtt", "ftp://broker", "--mqtt-optional"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[0])["label"] == "cat"
    assert "warning: --mqtt ftp://broker: expected mqtt://" in err and "running without MQTT" in err, err
    assert "mqtt:" not in err.split("summary:")[1]  # no MQTT, so no MQTT counts


def test_without_paho_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "paho", None)  # `import paho...` raises ImportError, as when not installed
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    assert run_main(["--source", SAMPLE, "--mqtt", "mqtt://127.0.0.1:1"]) == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert out == "" and len(errors) == 1 and "pip install 'edgeclf[mqtt]'" in errors[0], err


# --- the state: a change of label, at most once per interval ------------------------------------------------


def test_state_gate_debounces_changes_within_the_interval():
    gate = StateGate(1.0)
    assert gate.offer("cat", 0.0)  # the first frame
    assert not gate.offer("cat", 0.1)  # no change: never once per frame
    assert not gate.offer("dog", 0.5)  # a change inside the interval waits...
    assert gate.pending("dog")
    assert not gate.offer("cat", 0.7)  # ...and one that went back before the interval was up is never sent
    assert not gate.pending("cat")
    assert gate.offer("dog", 1.2)  # a change that still holds when the interval is up goes out then
    assert not gate.offer("dog", 5.0)
    assert gate.offer("uncertain", 5.1)  # the score fell below the threshold: a state of its own


def test_state_gate_with_no_interval_sends_every_change_and_nothing_else():
    gate = StateGate(0.0)
    labels = ["cat", "cat", "dog", "dog", "uncertain", "cat", "cat"]
    assert [gate.offer(label, i * 0.01) for i, label in enumerate(labels)] == [1, 0, 1, 0, 1, 1, 0]


def shown(label, score, t):
    return Shown(label, score, ((label, score),), 1_780_000_000.0 + t, "cam")


def test_events_start_and_end_once_per_stretch_of_a_label():
    tracker = EventTracker("m.tflite")
    frames = [("uncertain", 0.3, 0), ("cat", 0.7, 1), ("cat", 0.9, 2), ("cat", 0.8, 3), ("dog", 0.6, 4.5)]
    frames += [("uncertain", 0.4, 6), ("uncertain", 0.2, 7)]
    messages = [m for label, score, t in frames for m in tracker.update(shown(label, score, t))]
    assert [(m["type"], m["label"]) for m in messages] == [("start", "cat"), ("end", "cat"), ("start", "dog"),
                                                           ("end", "dog")]  # fmt: skip
    start, end = messages[0], messages[1]
    assert start["id"] == end["id"] != messages[2]["id"]
    assert end["duration"] == 3.5 and end["peak_score"] == 0.9 and start["score"] == 0.7
    assert start["model"] == "m.tflite" and start["source"] == "cam"
    began, ended = datetime.fromisoformat(end["start"]), datetime.fromisoformat(end["end"])
    assert began.utcoffset() == timedelta(0) and ended - began == timedelta(seconds=3.5)  # ISO 8601, UTC
    assert tracker.update(shown("truck", 0.9, 8))[0]["type"] == "start"
    (last,) = tracker.finish(1_780_000_000.0 + 9)  # a clean stop ends the open event
    assert last["type"] == "end" and last["label"] == "truck" and last["duration"] == 1.0
    assert tracker.finish(1_780_000_000.0 + 10) == []


# --- Home Assistant discovery -----------------------------------------------------------------------------


def ha_settings(**changes):
    base = MqttSettings(host="h", prefix="edgeclf/front door", ha_discovery=True, ha_labels=("cat", 'say "hi"'))
    return base.__class__(**{**base.__dict__, **changes})


def test_discovery_configs():
    configs = dict(hadiscovery.configs(ha_settings(snapshot=True), "airbench_tiny_int8.tflite"))
    assert sorted(configs) == [
        "homeassistant/binary_sensor/edgeclf_front_door/label_cat/config",
        "homeassistant/binary_sensor/edgeclf_front_door/label_say_hi_f65be999/config",
        "homeassistant/camera/edgeclf_front_door/snapshot/config",
        "homeassistant/sensor/edgeclf_front_door/label/config",
        "homeassistant/sensor/edgeclf_front_door/score/config",
    ]
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == 5
    assert all(mqttopts.ID_CHARS.search(u) is None for u in unique_ids)
    for config in configs.values():
        assert config["availability_topic"] == "edgeclf/front door/availability"
        assert config["device"]["identifiers"] == ["edgeclf_front_door"]
        assert config["device"]["model"] == "airbench_tiny_int8.tflite"
    camera = configs["homeassistant/camera/edgeclf_front_door/snapshot/config"]
    assert camera["topic"] == "edgeclf/front door/snapshot"
    without = dict(hadiscovery.configs(ha_settings(ha_labels=()), "m"))
    assert len(without) == 2  # no camera without --mqtt-snapshot (it would never show an image), no binary sensors


def test_discovery_templates_render_as_home_assistant_would():
    """Home Assistant renders value_template with Jinja2 (value_json: the state's JSON): render them the same way."""
    jinja2 = pytest.importorskip("jinja2")
    configs = dict(hadiscovery.configs(ha_settings(), "m"))
    env = jinja2.Environment()

    def render(topic, state):
        return env.from_string(configs[topic]["value_template"]).render(value_json=state).strip()

    node = "homeassistant/{}/edgeclf_front_door/{}/config"
    state = {"label": "cat", "score": 0.91234}
    assert render(node.format("sensor", "label"), state) == "cat"
    assert render(node.format("sensor", "score"), state) == "91.2"
    assert render(node.format("binary_sensor", "label_cat"), state) == "ON"
    assert render(node.format("binary_sensor", "label_cat"), {"label": "uncertain", "score": 0.3}) == "OFF"
    assert render(node.format("binary_sensor", "label_say_hi_f65be999"), {"label": 'say "hi"', "score": 1}) == "ON"
    assert render(node.format("binary_sensor", "label_say_hi_f65be999"), state) == "OFF"


def test_ha_labels_must_be_labels_of_the_model():
    with pytest.raises(EdgeClfError, match=r"--ha-labels: 'parcel' not among the labels of m.tflite \(cat, dog\)"):
        hadiscovery.check_labels(("cat", "parcel"), ("cat", "dog"), "m.tflite")


def test_each_ha_label_has_its_own_entity():
    """Labels that sanitising changes (non-ASCII, a space, a quote) keep apart: each gets a stable hash of itself."""
    labels = ("猫", "犬", "traffic light", "traffic-light", "traffic_light", "cat")
    configs = hadiscovery.configs(ha_settings(ha_labels=labels), "m.tflite")
    binary = {body["name"]: (topic, body["unique_id"]) for topic, body in configs if "/binary_sensor/" in topic}
    assert sorted(binary) == sorted(labels)
    assert len({topic for topic, _ in binary.values()}) == len({uid for _, uid in binary.values()}) == len(labels)
    assert all(mqttopts.ID_CHARS.search(uid) is None for _, uid in binary.values())
    assert binary["cat"][1] == "edgeclf_front_door_label_cat"  # a label that needs no change keeps its plain id
    assert binary["traffic-light"][1] == "edgeclf_front_door_label_traffic-light"
    again = dict((b["name"], b["unique_id"]) for t, b in hadiscovery.configs(ha_settings(ha_labels=labels[:1]), "m"))
    assert again["猫"] == binary["猫"][1]  # stable: the same label, the same entity, whatever else is listed


def test_ha_labels_whose_ids_collide_are_refused():
    clean = hadiscovery.object_id("猫")  # label_<hash>: a label named <hash> would have it too
    with pytest.raises(EdgeClfError, match=r"^--ha-labels: 'cat' is given twice$"):
        hadiscovery.check_labels(("cat", "cat"), ("cat", "dog"), "m.tflite")
    named = clean.removeprefix("label_")
    with pytest.raises(EdgeClfError) as error:
        hadiscovery.check_labels(("猫", named), ("猫", named), "m.tflite")
    assert str(error.value) == f"--ha-labels: '猫' and '{named}' would be the same Home Assistant entity ({clean})"
