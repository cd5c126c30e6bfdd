"""Connecting to the broker at start-up: wrong credentials, TLS, an unreachable broker each give one line and
exit 1 (or a warning with --mqtt-optional); the password from the environment; `doctor --mqtt`."""

from __future__ import annotations

import json

import pytest

from edgeclf.edge_app.doctor import main as doctor_main
from edgeclf.edge_app.mqttopts import PASSWORD_ENV
from edgeclf.edge_app.run import main as run_main
from tests.conftest import wait_until
from tests.mqtt_broker import Broker, Subscriber, broker, free_port, need_broker  # noqa: F401 - the fixture

SAMPLE = "models/samples/cat.jpg"
PREFIX = "test/pi"


def run(url, *extra):
    return run_main(["--source", SAMPLE, "--mqtt", url, "--mqtt-topic", PREFIX, *extra])


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture()
def secured(tmp_path):
    """A broker that takes only alice / s3cret."""
    need_broker()
    server = Broker(tmp_path, users={"alice": "s3cret"}).start()
    yield server
    server.stop()


@pytest.fixture()
def tls_broker(tmp_path):
    """A broker with a TLS listener, its certificate signed by a CA made for the test."""
    need_broker()
    server = Broker(tmp_path, tls=True).start()
    yield server
    server.stop()


def test_an_unreachable_broker_is_one_line_and_exit_1(capsys):
    need_broker()
    port = free_port()
    assert run(f"mqtt://127.0.0.1:{port}") == 1
    out, err = capsys.readouterr()
    assert out == "", "the run classified without its broker"
    assert error_lines(err) == [
        f"error: mqtt: cannot connect to mqtt://127.0.0.1:{port}: connection refused: no broker listens on "
        f"127.0.0.1:{port}"
    ], err
    assert "Traceback" not in err


def test_an_unknown_host_is_one_line(capsys):
    need_broker()
    assert run("mqtt://no-such-host.invalid") == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert "unknown host 'no-such-host.invalid'" in line


def test_mqtt_optional_classifies_without_the_broker(capsys):
    need_broker()
    port = free_port()
    assert run(f"mqtt://127.0.0.1:{port}", "--mqtt-optional") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["label"] == "cat"
    assert f"warning: mqtt: cannot connect to mqtt://127.0.0.1:{port}: connection refused" in err
    assert "running on and retrying (--mqtt-optional)" in err and error_lines(err) == []
    assert "mqtt: 0 reconnects" in err.split("summary:")[1]


def test_wrong_credentials_are_refused_in_one_line(secured, capsys):
    assert run(secured.url("alice", "wrong")) == 1
    (line,) = error_lines(capsys.readouterr().err)
    url = f"mqtt://alice@127.0.0.1:{secured.port}"
    assert line == f"error: mqtt: cannot connect to {url}: the broker refused the connection: Not authorized", line
    assert run(secured.url()) == 1  # anonymous
    assert "Not authorized" in capsys.readouterr().err


def test_the_password_from_the_environment(secured, monkeypatch, capsys):
    import paho.mqtt.client as paho

    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    assert run(secured.url("alice")) == 0, capsys.readouterr().err
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.username_pw_set("alice", "s3cret")
    got = []
    client.on_message = lambda _c, _u, message: got.append((message.topic, message.payload, message.retain))
    client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/#", qos=1)
    client.connect("127.0.0.1", secured.port)
    client.loop_start()
    try:
        wait_until(lambda: len(got) >= 2, 10, "the retained availability and state")
    finally:
        client.disconnect()
        client.loop_stop()
    kept = {topic: payload for topic, payload, retain in got if retain}
    assert kept[f"{PREFIX}/availability"] == b"offline" and json.loads(kept[f"{PREFIX}/state"])["label"] == "cat"


def test_tls_with_the_brokers_ca(tls_broker, capsys):
    assert run(tls_broker.url(), "--mqtt-ca", str(tls_broker.ca)) == 0, capsys.readouterr().err
    assert "mqtt: 0 reconnects, 0 messages dropped" in capsys.readouterr().err


def test_tls_without_the_ca_is_a_certificate_error(tls_broker, capsys):
    assert run(tls_broker.url()) == 1  # the system's CAs do not know the test's CA
    (line,) = error_lines(capsys.readouterr().err)
    # OpenSSL's words depend on whether the broker sends its CA along: 'self-signed certificate in certificate chain'
    # or 'unable to get local issuer certificate'
    assert "TLS: the broker's certificate was not accepted (" in line and "certificate" in line.split("(")[1], line
    assert "check --mqtt-ca" in line


def test_plain_mqtt_to_a_tls_port_fails_in_one_line(tls_broker, monkeypatch, capsys):
    """The TLS listener takes the plain CONNECT for the start of a handshake and waits: the bounded wait for the
    CONNACK ends it (2 s here instead of 10)."""
    monkeypatch.setattr("edgeclf.edge_app.mqtt.CONNECT_WAIT", 2.0)
    assert run(f"mqtt://127.0.0.1:{tls_broker.port}") == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line == f"error: mqtt: cannot connect to mqtt://127.0.0.1:{tls_broker.port}: no CONNACK within 2 s", line


def test_a_ca_needs_mqtts_and_must_exist(tmp_path, capsys):
    assert run("mqtt://127.0.0.1", "--mqtt-ca", str(tmp_path / "ca.pem")) == 1
    assert error_lines(capsys.readouterr().err) == ["error: --mqtt-ca is for an mqtts:// broker, not mqtt://127.0.0.1"]
    assert run("mqtts://127.0.0.1", "--mqtt-ca", str(tmp_path / "ca.pem")) == 1
    assert error_lines(capsys.readouterr().err) == [f"error: --mqtt-ca {tmp_path / 'ca.pem'}: no such file"]


# --- doctor --mqtt ------------------------------------------------------------------------------------------


def test_doctor_checks_the_broker_and_lists_the_topics(broker, capsys):  # noqa: F811
    watcher = Subscriber(broker.port)
    wait_until(lambda: watcher.subscribed, 10, "the test's subscription")
    try:
        code = doctor_main(["--mqtt", broker.url(), "--mqtt-topic", PREFIX])
        out = capsys.readouterr().out
    finally:
        watcher.close()
    lines = out.splitlines()
    assert f"[ ok ] mqtt: connected to mqtt://127.0.0.1:{broker.port}" in lines, out
    assert f"[ ok ] mqtt topics: {PREFIX}/availability, {PREFIX}/state, {PREFIX}/event, {PREFIX}/snapshot" in lines
    (discovery,) = [line for line in lines if line.startswith("[ ok ] home assistant: ")]
    assert discovery.split("with --ha-discovery: ")[1].split(", ") == [
        "homeassistant/sensor/test_pi/label/config",
        "homeassistant/sensor/test_pi/score/config",
        "homeassistant/binary_sensor/test_pi/label_<LABEL>/config",
        "homeassistant/camera/test_pi/snapshot/config",
    ]
    assert watcher.messages == []  # it connected without publishing anything (no will, no 'online')
    assert not [line for line in lines if line.startswith("[FAIL] mqtt")]
    assert code == (1 if any(line.startswith("[FAIL]") for line in lines) else 0)  # the other checks: this machine's


def test_doctor_fails_an_unreachable_broker(capsys):
    need_broker()
    port = free_port()
    assert doctor_main(["--mqtt", f"mqtt://127.0.0.1:{port}"]) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] mqtt: cannot connect to mqtt://127.0.0.1:{port}: connection refused" in out, out
    assert "fix: check the URL" in out


def test_a_unit_with_mqtt_waits_for_the_network(capsys):
    assert doctor_main(["--unit", "--source", "picamera2", "--mqtt", "mqtt://broker.lan", "--ha-discovery"]) == 0
    out = capsys.readouterr().out
    assert "After=network-online.target\nWants=network-online.target" in out and "# --mqtt: start once" in out
    assert "--mqtt mqtt://broker.lan --ha-discovery --no-display" in out


def test_a_unit_with_a_bad_broker_url_is_one_line_and_exit_2(capsys):
    assert doctor_main(["--unit", "--source", "picamera2", "--mqtt", "http://broker.lan"]) == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert out == "" and line.endswith(
        "--unit: error: edgeclf run: --mqtt http://broker.lan: expected mqtt://[user[:pass]@]host[:port] or mqtts://..."
    ), err
