"""The MQTT options `run`, `serve` and `doctor` share, and the MqttSettings they make.

A broker URL is `mqtt://[user[:pass]@]host[:port]` (port 1883) or `mqtts://...` (TLS, port 8883, the CA of
--mqtt-ca or the system's). The password may come from $EDGECLF_MQTT_PASSWORD instead, which `ps` does not
show. A URL that cannot be used is an EdgeClfError (one line, exit 1), as the issue asks; a topic prefix with
a wildcard is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeclf.edge_app.argtypes import finite_float
from edgeclf.edge_app.errors import EdgeClfError

log = logging.getLogger(__name__)

PASSWORD_ENV = "EDGECLF_MQTT_PASSWORD"
PORTS = {"mqtt": 1883, "mqtts": 8883}
DEFAULT_QUEUE = 100  # QoS 1 events waiting for a broker: a few minutes of label changes, then drops are counted
DEFAULT_KEEPALIVE = 30  # s; the broker publishes the last will after 1.5x this without a word from us
ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def sanitise(text: str) -> str:
    """`text` with each run of characters outside [A-Za-z0-9_-] made one '_' (Home Assistant's IDs and topics)."""
    return ID_CHARS.sub("_", text).strip("_") or "_"


def default_prefix() -> str:
    """edgeclf/<hostname> (the short name, as `hostname -s` prints it)."""
    return f"edgeclf/{socket.gethostname().split('.')[0] or 'edgeclf'}"


@dataclass(frozen=True)
class MqttSettings:
    """Where to publish and what: the broker, the topic prefix, the rates and Home Assistant's discovery."""

    host: str
    port: int = 1883
    tls: bool = False
    ca: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or a repr
    prefix: str = "edgeclf/edgeclf"
    min_interval: float = 1.0
    snapshot: bool = False
    optional: bool = False
    ha_discovery: bool = False
    ha_labels: tuple[str, ...] = ()
    keepalive: int = DEFAULT_KEEPALIVE
    queue: int = DEFAULT_QUEUE

    @property
    def url(self) -> str:
        """The broker as a URL without the password, for messages."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    @property
    def node_id(self) -> str:
        """The prefix as a Home Assistant node id: edgeclf/kitchen-pi -> edgeclf_kitchen-pi."""
        return sanitise(self.prefix)

    def topic(self, name: str) -> str:
        """PREFIX/name."""
        return f"{self.prefix}/{name}"


def parse_url(url: str, environ: Mapping[str, str]) -> dict[str, object]:
    """host, port, tls, username and password of a broker URL; EdgeClfError naming what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urlsplit quotes the text it took for a port ("... as 's3cr'"), a piece of a password with a '/' in it
        hint = "; a '/' or '@' in the password is written %2F or %40" if "@" in url else ""
        raise EdgeClfError(f"--mqtt {_redacted(url)}: {str(exc).split(' as ')[0]}{hint}") from None
    if parts.scheme not in PORTS:
        raise EdgeClfError(f"--mqtt {_redacted(url)}: expected mqtt://[user[:pass]@]host[:port] or mqtts://...")
    if not parts.hostname:
        raise EdgeClfError(f"--mqtt {_redacted(url)}: no broker host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EdgeClfError(f"--mqtt {_redacted(url)}: a broker URL has no path (the topic goes in --mqtt-topic)")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username:
        password = environ.get(PASSWORD_ENV)
    return {
        "host": parts.hostname,
        "port": port or PORTS[parts.scheme],
        "tls": parts.scheme == "mqtts",
        "username": username,
        "password": password,
    }


def _redacted(url: str) -> str:
    """`url` with any password replaced by ***: everything from the first ':' of the user part to the last '@'
    (a password may hold '@' and '/' unencoded, which urlsplit would read as the host or the path)."""
    return re.sub(r"^([^/]*//[^:]*:).*@", r"\1***@", url)


def _topic_prefix(text: str) -> str:
    """A --mqtt-topic value: no wildcard, no empty level, no leading or trailing '/'."""
    if "+" in text or "#" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: '+' and '#' are wildcards, not allowed in a topic")
    if not text or text.startswith("/") or text.endswith("/") or "//" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected levels like edgeclf/kitchen, without empty ones")
    return text


def _labels(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected label names separated by commas, e.g. cat,dog")
    return names


def add_arguments(parser: argparse.ArgumentParser, publishing: bool = True) -> None:
    """--mqtt, --mqtt-topic, --mqtt-ca, --mqtt-keepalive and, for `run` and `serve` (`publishing`), the options
    of what is published, in an argument group of their own."""
    group = parser.add_argument_group("MQTT / Home Assistant")
    group.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish to this broker: mqtt://[user[:pass]@]host[:port] or mqtts://... (TLS); the password may "
        f"come from ${PASSWORD_ENV} instead. Needs pip install 'edgeclf[mqtt]'",
    )
    group.add_argument(
        "--mqtt-topic",
        type=_topic_prefix,
        metavar="PREFIX",
        help=f"topic prefix (default {default_prefix()}): PREFIX/availability, PREFIX/state, PREFIX/event",
    )
    group.add_argument("--mqtt-ca", type=Path, metavar="FILE", help="CA certificate (PEM) for an mqtts:// broker")
    group.add_argument(
        "--mqtt-keepalive",
        type=int,
        default=DEFAULT_KEEPALIVE,
        metavar="S",
        help=f"seconds between keepalives; the broker publishes 'offline' after 1.5x this of silence "
        f"(default {DEFAULT_KEEPALIVE})",
    )
    if not publishing:
        return
    group.add_argument(
        "--mqtt-min-interval",
        type=finite_float,
        default=1.0,
        metavar="S",
        help="publish PREFIX/state at most once per S seconds (default 1); a change within S goes out when S is up",
    )
    group.add_argument(
        "--mqtt-snapshot", action="store_true", help="publish a JPEG of each event's first frame to PREFIX/snapshot"
    )
    group.add_argument(
        "--mqtt-optional",
        action="store_true",
        help="start even when the broker cannot be reached (a warning; it keeps trying) instead of exiting 1",
    )
    group.add_argument(
        "--mqtt-queue",
        type=int,
        default=DEFAULT_QUEUE,
        metavar="N",
        help=f"events and snapshots kept while the broker is away (default {DEFAULT_QUEUE}); newer ones are "
        "dropped and counted in the summary",
    )
    group.add_argument(
        "--ha-discovery", action="store_true", help="publish Home Assistant discovery configs (homeassistant/...)"
    )
    group.add_argument(
        "--ha-labels",
        type=_labels,
        metavar="A,B,C",
        help="with --ha-discovery: a binary sensor per label named here, on while that label is shown",
    )


def settings(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> MqttSettings | None:
    """The MqttSettings of parsed `args` (None without --mqtt); usage errors (exit 2) for options that need
    --mqtt or values out of range, EdgeClfError (exit 1) for a URL that cannot be used."""
    environ = os.environ if environ is None else environ
    publishing = hasattr(args, "mqtt_min_interval")
    if args.mqtt is None:
        given = [name for name, on in _needs_mqtt(args, publishing) if on]
        if given:
            parser.error(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --mqtt URL")
        return None
    if not 1 <= args.mqtt_keepalive <= 65535:
        parser.error("--mqtt-keepalive must be 1 to 65535 seconds")
    if publishing:
        if args.mqtt_min_interval < 0:
            parser.error("--mqtt-min-interval must be 0 or more")
        if args.mqtt_queue < 1:
            parser.error("--mqtt-queue must be at least 1")
        if args.ha_labels and not args.ha_discovery:
            parser.error("--ha-labels goes with --ha-discovery")
    try:
        fields = parse_url(args.mqtt, environ)
        if args.mqtt_ca is not None:
            if not fields["tls"]:
                raise EdgeClfError(f"--mqtt-ca is for an mqtts:// broker, not {_redacted(args.mqtt)}")
            if not args.mqtt_ca.is_file():
                raise EdgeClfError(f"--mqtt-ca {args.mqtt_ca}: no such file")
    except EdgeClfError as exc:
        if not (publishing and args.mqtt_optional):
            raise
        log.warning("%s; running without MQTT (--mqtt-optional)", exc)
        return None
    extra = {}
    if publishing:
        extra = {
            "min_interval": args.mqtt_min_interval,
            "snapshot": args.mqtt_snapshot,
            "optional": args.mqtt_optional,
            "ha_discovery": args.ha_discovery,
            "ha_labels": args.ha_labels or (),
            "queue": args.mqtt_queue,
        }
    return MqttSettings(
        **fields,  # type: ignore[arg-type]
        ca=args.mqtt_ca,
        prefix=args.mqtt_topic or default_prefix(),
        keepalive=args.mqtt_keepalive,
        **extra,
    )


def _needs_mqtt(args: argparse.Namespace, publishing: bool) -> list[tuple[str, bool]]:
    """The MQTT options given without --mqtt, which would otherwise be ignored in silence."""
    options = [
        ("--mqtt-topic", args.mqtt_topic is not None),
        ("--mqtt-ca", args.mqtt_ca is not None),
        ("--mqtt-keepalive", args.mqtt_keepalive != DEFAULT_KEEPALIVE),
    ]
    if publishing:
        options += [
            ("--mqtt-min-interval", args.mqtt_min_interval != 1.0),
            ("--mqtt-snapshot", args.mqtt_snapshot),
            ("--mqtt-optional", args.mqtt_optional),
            ("--mqtt-queue", args.mqtt_queue != DEFAULT_QUEUE),
            ("--ha-discovery", args.ha_discovery),
            ("--ha-labels", args.ha_labels is not None),
        ]
    return options
