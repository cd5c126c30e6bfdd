"""A real Mosquitto broker for the MQTT tests, and a subscriber that records what it receives.

The broker runs from a generated config on 127.0.0.1 on a free port (mosquitto has no `-p 0`), optionally
with a password file (mosquitto_passwd -b) and a TLS listener (a CA and server certificate made with the
openssl CLI). Without the mosquitto binary (Debian's `mosquitto`, which .ci/run installs) or paho-mqtt
the tests that use it skip, saying which is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
START_WAIT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """One mosquitto process; `restart()` stops it and starts it again on the same port (retained messages
    are lost, as after a power cut of a broker without persistence)."""

    folder: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] | None = None
    tls: bool = False
    proc: subprocess.Popen | None = None
    ca: Path | None = None

    def config(self) -> Path:
        # started as root, mosquitto switches to the user `mosquitto`, who cannot read the test's folder
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr", f"user {user}"]
        if self.users:
            passwords = self.folder / "passwd"
            passwords.touch()
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            self.ca, cert, key = make_certificates(self.folder)
            lines += [f"cafile {self.ca}", f"certfile {cert}", f"keyfile {key}"]
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Broker:
        conf = self.folder / "mosquitto.conf"
        if not conf.exists():
            conf = self.config()
        self.log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + START_WAIT
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()[-2000:]}")
            time.sleep(0.02)  # polling for the port to accept, not a guess at how long the start takes
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, user: str = "", password: str | None = None) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        auth = f"{user}{':' + password if password is not None else ''}@" if user else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 / localhost signed by it (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make the TLS broker's certificates")
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
            "-days", "2", "-subj", "/CN=edgeclf test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


def need_broker() -> None:
    """Skip, with the reason, where the broker or the client library is missing."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)")
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'edgeclf[mqtt]')")


@pytest.fixture()
def broker(tmp_path):
    """A running anonymous broker on a free loopback port, stopped after the test."""
    need_broker()
    folder = tmp_path / "broker"
    folder.mkdir()
    server = Broker(folder).start()
    yield server
    server.stop()


class Subscriber:
    """A test's own client: subscribes to `topics` (again after each reconnect) and records every message."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",)) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, bytes, bool]] = []  # topic, payload, retained
        self.connects = 0
        self.subscribed = 0  # SUBACKs: messages published after the first are seen
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}-{id(self)}")
        self.client.reconnect_delay_set(1, 1)
        self.topics = topics

        def on_connect(client, _userdata, _flags, reason_code, _properties):
            if not reason_code.is_failure:
                for topic in topics:
                    client.subscribe(topic, qos=1)
                with self._lock:
                    self.connects += 1

        def on_message(_client, _userdata, message):
            with self._lock:
                self.messages.append((message.topic, message.payload, bool(message.retain)))

        def on_subscribe(_client, _userdata, _mid, _reason_codes, _properties):
            with self._lock:
                self.subscribed += 1

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, 5)
        self.client.loop_start()

    def on(self, topic: str) -> list[bytes]:
        """The payloads received on `topic`, in order."""
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def texts(self, topic: str) -> list[str]:
        return [payload.decode() for payload in self.on(topic)]

    def topics_seen(self) -> set[str]:
        with self._lock:
            return {t for t, _, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
