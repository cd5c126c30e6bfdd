"""One connection to an MQTT broker (paho-mqtt 2.x, imported here only): connect and wait, bounded, for the
broker's CONNACK; publish without ever blocking the caller; reconnect by itself; count drops and reconnects.

paho's network loop runs in its own thread (loop_start). A publish() only appends to paho's queue, so the
classification loop never waits for the network. The queue of QoS 1 messages is bounded
(max_queued_messages_set): while the broker is away, messages beyond it are dropped and counted.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, MissingDependencyError
from edgeclf.edge_app.logs import NOTICE
from edgeclf.edge_app.mqttopts import MqttSettings, sanitise

log = logging.getLogger(__name__)

CONNECT_WAIT = 10.0  # s for the TCP (and TLS) connection and then for the broker's CONNACK, each
RECONNECT_DELAY = (1, 30)  # s: paho's first wait after a lost connection, doubling up to the second
CLOSE_WAIT = 2.0  # s for the clean exit's 'offline' to be acknowledged and the network thread to end
ONLINE, OFFLINE = "online", "offline"


def paho_client() -> Any:
    """paho.mqtt.client, or MissingDependencyError naming the extra that brings it."""
    try:
        import paho.mqtt.client as paho
    except ImportError as exc:
        raise MissingDependencyError(f"paho-mqtt is not installed: pip install 'edgeclf[mqtt]' ({exc})") from None
    return paho


def connection_problem(exc: BaseException, settings: MqttSettings) -> str:
    """What a failed connection attempt means, in words a user can act on."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate was not accepted ({exc.verify_message}); check --mqtt-ca"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS failed ({exc.reason if isinstance(exc, ssl.SSLError) else exc}): is {where} an mqtts:// port?"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: no broker listens on {where}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host {settings.host!r}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} within {CONNECT_WAIT:g} s"
    if isinstance(exc, ConnectionError | OSError):
        return f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
    return f"{type(exc).__name__}: {exc}"


class MqttLink:
    """A paho client with the availability topic's last will ('offline', retained).

    `on_connected` runs in paho's thread after every successful CONNACK (the first and each reconnect):
    the place to publish what a restarted broker has lost. `will=False` (doctor) sets no will."""

    def __init__(
        self,
        settings: MqttSettings,
        on_connected: Callable[[], None] | None = None,
        will: bool = True,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.on_connected = on_connected
        self.availability = settings.topic("availability")
        self.drops = 0
        self.reconnects = 0
        self._will = will
        # unique per process: `run` and `serve` on one Pi, or a restart overlapping the old process, must not
        # take each other's session (the broker would drop the older connection, which reconnects, forever)
        self.client_id = client_id or f"edgeclf-{sanitise(settings.prefix)}-{os.getpid()}"
        self._connack = threading.Event()
        self._refused: str | None = None  # the CONNACK's reason when the broker said no
        self._ever_connected = False
        self._closing = False
        self._warned_outage = False  # one warning per outage, not one per retry
        self._warned_drops = False
        self._paho = paho_client()
        self.client = self._make_client()

    def _make_client(self) -> Any:
        paho, s = self._paho, self.settings
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311)
        if self._will:
            client.will_set(self.availability, OFFLINE, qos=1, retain=True)
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(ca_certs=str(s.ca) if s.ca else None)
        client.reconnect_delay_set(*RECONNECT_DELAY)
        client.max_queued_messages_set(s.queue)
        client.connect_timeout = CONNECT_WAIT
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    def start(self, stop: threading.Event | None = None) -> None:
        """Connect and wait for the CONNACK (CONNECT_WAIT s for each step, or until `stop` is set).

        EdgeClfError with one line for an unreachable broker, a TLS failure or refused credentials; with
        settings.optional a warning instead, and paho keeps trying in the background."""
        stop = stop or threading.Event()
        problem = self._first_connect(stop)
        if problem is None:
            self.client.loop_start()
            deadline = time.monotonic() + CONNECT_WAIT
            while not self._connack.wait(0.05) and not stop.is_set() and time.monotonic() < deadline:
                pass
            if self._refused:
                problem = f"the broker refused the connection: {self._refused}"
            elif not self._connack.is_set():
                problem = "interrupted" if stop.is_set() else f"no CONNACK within {CONNECT_WAIT:g} s"
        else:
            self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
            self.client.loop_start()
        if problem is None:
            return
        if stop.is_set():  # a signal during start-up: the caller exits as the signal asks, not with an error
            self._stop_loop(CLOSE_WAIT)
            return
        message = f"mqtt: cannot connect to {self.settings.url}: {problem}"
        if not self.settings.optional:
            self._stop_loop(CLOSE_WAIT)
            raise EdgeClfError(message)
        log.warning("%s; running on and retrying (--mqtt-optional)", message)
        self._warned_outage = True

    def _first_connect(self, stop: threading.Event) -> str | None:
        """paho's blocking connect (TCP, TLS, CONNECT) in a helper thread, so that a signal is not kept
        waiting on a silent host; the problem in words, or None once the CONNECT is sent."""
        outcome: list[BaseException | None] = []
        s = self.settings

        def connect() -> None:
            try:
                self.client.connect(s.host, s.port, s.keepalive)
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - OSError, ssl errors, ValueError: each becomes one line
                outcome.append(exc)

        helper = threading.Thread(target=connect, name="edgeclf-mqtt-connect", daemon=True)
        helper.start()
        deadline = time.monotonic() + CONNECT_WAIT + 1
        while helper.is_alive() and not stop.is_set() and time.monotonic() < deadline:
            helper.join(0.05)
        if not outcome:
            return "interrupted" if stop.is_set() else f"no answer from {s.host}:{s.port} within {CONNECT_WAIT:g} s"
        exc = outcome[0]
        return None if exc is None else connection_problem(exc, s)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._connack.set()
            if self._ever_connected and not self._warned_outage:
                log.warning("mqtt: %s refused the connection: %s; retrying", self.settings.url, reason_code)
                self._warned_outage = True
            return
        self._refused = None
        if self._ever_connected:
            self.reconnects += 1
            log.log(NOTICE, "mqtt: connected to %s again", self.settings.url)
        self._ever_connected = True
        self._warned_outage = self._warned_drops = False
        # QoS 0: these are all sent again at every connect, so one lost with a connection needs no queue slot
        # (and could not take one when the queue is full of events from the outage)
        if self._will:  # doctor's check connects without a will, and says nothing either
            client.publish(self.availability, ONLINE, qos=0, retain=True)
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:  # a bug must not kill paho's thread and with it every reconnect
                log.exception("mqtt: publishing the state after connecting failed")
        self._connack.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any) -> None:
        if self._closing or self._warned_outage:
            return
        self._warned_outage = True
        log.warning(
            "mqtt: lost the broker %s (%s); reconnecting, keeping up to %d events meanwhile",
            self.settings.url,
            reason_code,
            self.settings.queue,
        )

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> bool:
        """Hand a message to paho; False when it was dropped (the queue is full: counted in `drops`).

        QoS 1 messages wait in the queue while the broker is away; QoS 0 ones are sent only when connected."""
        if qos == 0 and not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == self._paho.MQTT_ERR_QUEUE_SIZE:
            self.drops += 1
            if not self._warned_drops:
                self._warned_drops = True
                log.warning(
                    "mqtt: %d messages are waiting for %s: dropping new ones (counted) until it is back",
                    self.settings.queue,
                    self.settings.url,
                )
            return False
        return True

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """A clean exit: 'offline' (retained), then DISCONNECT, so the broker discards the will; bounded."""
        if self._closing:
            return
        if self._will and self.connected:
            info = self.client.publish(self.availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the connection went, or the queue was full: the will says it
                pass
        self._closing = True
        self.client.disconnect()
        self._stop_loop(timeout)

    def _stop_loop(self, timeout: float) -> None:
        """loop_stop() waits for paho's thread without a limit (it may sit in a connect attempt): bounded."""
        self._closing = True
        stopper = threading.Thread(target=self.client.loop_stop, name="edgeclf-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
