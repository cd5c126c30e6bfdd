"""`edgeclf serve`: the web UI and JSON API on a production WSGI server (waitress)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeclf.edge_app import cameraopts, imprint, logs, malloc, mqttopts, notify
from edgeclf.edge_app.argtypes import finite_float
from edgeclf.edge_app.cli import guarded
from edgeclf.edge_app.errors import EdgeClfError, require
from edgeclf.edge_app.mqttopts import MqttSettings
from edgeclf.edge_app.run import default_model
from edgeclf.edge_app.runtime import RUNTIMES
from edgeclf.edge_app.shipped import DEFAULT_MODEL
from edgeclf.edge_app.sources import CameraSettings, OpenCVSource, parse_source
from edgeclf.edge_app.web.app import create_app
from edgeclf.edge_app.web.auth import LOOPBACK_NAMES, MIN_TOKEN_CHARS, token_problem
from edgeclf.edge_app.web.config import WebConfig
from edgeclf.edge_app.web.deploy import Deployer
from edgeclf.edge_app.web.feed import LiveFeed, SharedClassifier, load_model
from edgeclf.edge_app.web.looping import LoopingVideo
from edgeclf.edge_app.web.store import History
from edgeclf.edge_app.web.teaching import Teaching
from edgeclf.edge_app.web.uploads import MAX_PIXELS

if TYPE_CHECKING:
    from edgeclf.edge_app.mqttpublish import Publisher

log = logging.getLogger("edgeclf.edge_app.web.serve")  # not __name__: that is "__main__" under `python -m`

TOKEN_ENV = "EDGECLF_TOKEN"
TOKEN_RECIPE = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
MAX_TOKEN_FILE = 4096  # bytes: a token file is one line, never /dev/zero
MAX_UPLOAD_MB = 4096  # MiB: far above any photo; 1e308 would overflow the byte count
SIGNAL_GRACE = 1.0  # s that requests in flight get after a signal (waitress's own wait is 5 s; the deadline is 2 s)
# waitress's select() timeout. A signal that lands between Python's last check and the select() call is
# seen only when select() returns: with waitress's default 1 s that delayed a stop by a second (1 run in 3)
LOOP_TIMEOUT = 0.2
MiB = 1024 * 1024
LIVE_POLL = 0.2  # s between looks at the live feed's newest result for MQTT (its state goes out at most 1/s)


@dataclass(frozen=True)
class ServeConfig:
    """What the server is built from: the command line, checked (serve_config makes one)."""

    model: Path | None = None  # None: default_model()
    labels: Path | None = None
    runtime: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 8
    token: str | None = None  # None on an address other than loopback: make_app generates and logs one
    top_k: int = 5
    threshold: float = 0.5
    db: Path | None = None  # None: default_db()
    history_live_every: float = 0.0
    history_max_live: int = 10_000
    max_upload: int = 10 * MiB  # bytes
    max_pixels: int = MAX_PIXELS
    max_viewers: int = 2
    source: str | None = None
    camera: CameraSettings = CameraSettings()
    retries: int = 5
    mqtt: MqttSettings | None = None  # None: no --mqtt
    teach_data: Path | None = None  # None: teach/ beside the history database
    base_data: Path | None = None  # pictures of the base model's classes for Learn in extend mode
    base_cost: float | None = None  # percent of them Learn's new classes may take; None: teach's default
    review_dir: Path | None = None  # the --collect folder of `run`; None: the Review page shows the history only


def default_db() -> Path:
    """$XDG_DATA_HOME/edgeclf/history.sqlite3, else ~/.local/share/edgeclf/history.sqlite3."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "edgeclf" / "history.sqlite3"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m edgeclf.edge_app.web.serve",
        description="Serve the classifier on the device: upload and classify, live camera view, prediction "
        "history and model card, plus a JSON API. Binds to 127.0.0.1 unless --host says otherwise; any other "
        "address needs a token (given with --token, --token-file or $EDGECLF_TOKEN, or generated and printed).",
    )
    parser.add_argument("--model", type=Path, help=f"the .tflite model (default: models/{DEFAULT_MODEL.name})")
    parser.add_argument("--labels", type=Path, help="labels file for a model without metadata")
    parser.add_argument("--source", help="camera / video / URL for the Live page (default: none, Live shows a note)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one, printed at start)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        help=f"require this token (Authorization: Bearer TOKEN, or ?token= once): at least {MIN_TOKEN_CHARS} "
        "printable ASCII characters, no spaces. Visible in `ps`: prefer --token-file",
    )
    token.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"read the token from this file (one line; the trailing newline is dropped). Without --token and "
        f"--token-file, ${TOKEN_ENV} is used when set. Make one with: {TOKEN_RECIPE} > FILE",
    )
    parser.add_argument("--db", type=Path, help=f"history database (default {default_db()})")
    parser.add_argument(
        "--teach-data",
        type=Path,
        metavar="DIR",
        help="the Teach page's folder of <label>/<pictures> (default: teach/ beside the history database; "
        "taught models go to taught/ there, uploaded ones to models/)",
    )
    parser.add_argument(
        "--base-data",
        type=Path,
        metavar="DIR",
        help="pictures of the base model's own classes (<label>/<pictures>, e.g. its training folder): Learn in "
        "extend mode fits the new classes against them (as edgeclf teach --base-data). "
        "Without them a taught class takes many pictures of a similar base class",
    )
    parser.add_argument(
        "--base-cost",
        type=finite_float,
        metavar="PERCENT",
        help="with --base-data: Learn's new classes may take at most this percent of those pictures (as edgeclf "
        f"teach --base-cost; default {imprint.COST * 100:g})",
    )
    parser.add_argument(
        "--review-dir",
        type=Path,
        metavar="DIR",
        help="the folder `edgeclf run --collect DIR` saves uncertain frames to: the Review page shows them "
        "(default: none, the Review page shows the history rows only)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=finite_float,
        default=10.0,
        help=f"upload limit in MiB, at most {MAX_UPLOAD_MB} (default 10; 413 above it)",
    )
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help=f"largest image (default {MAX_PIXELS:,})")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown (default 5)")
    parser.add_argument("--threshold", type=finite_float, default=0.5, help="below this top score: 'uncertain' (0.5)")
    parser.add_argument(
        "--history-live-every",
        type=finite_float,
        default=0.0,
        help="also store a live frame every S seconds (default 0: uploads only)",
    )
    parser.add_argument(
        "--history-max-live",
        type=int,
        default=10_000,
        metavar="N",
        help="keep at most N live frames in the history, deleting the oldest (default 10,000; 0: no cap; "
        "uploads are never deleted)",
    )
    parser.add_argument("--threads", type=int, default=8, help="request threads (default 8)")
    parser.add_argument(
        "--max-viewers",
        type=int,
        help="live MJPEG viewers at once (default 2, or --threads - 1 when that is smaller); each holds a request "
        "thread, so it must stay below --threads: the rest answer /healthz, uploads and history. "
        "The next viewer gets 503",
    )
    parser.add_argument("--runtime", choices=list(RUNTIMES), help="force a TFLite runtime")
    camera = parser.add_argument_group("camera (with --source)")
    cameraopts.add_arguments(camera)
    mqttopts.add_arguments(parser)
    return parser


def read_token_file(path: Path) -> str:
    """The token in `path`, without its trailing newline; EdgeClfError when the file cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise EdgeClfError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE:
        raise ValueError(f"--token-file {path}: larger than {MAX_TOKEN_FILE} bytes, not a token file")
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"--token-file {path}: not UTF-8 text") from None


def resolve_token(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The token from --token, --token-file or $EDGECLF_TOKEN (only when neither option is given), or None.

    ValueError (a usage error) for an empty, blank or short token; EdgeClfError for an unreadable file.
    """
    if args.token is not None:
        token, origin = args.token, "--token"
    elif args.token_file is not None:
        token, origin = read_token_file(args.token_file), f"--token-file {args.token_file}"
    elif TOKEN_ENV in environ:
        token, origin = environ[TOKEN_ENV], TOKEN_ENV
    else:
        return None
    problem = token_problem(token)
    if problem:
        raise ValueError(f"{origin}: {problem}; make one with: {TOKEN_RECIPE}")
    return token


def serve_config(parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str]) -> ServeConfig:
    """The ServeConfig of a parsed command line; a usage error (exit 2) for values the server cannot take.

    The token comes from --token, --token-file or $EDGECLF_TOKEN in `environ`; --max-viewers defaults to
    2, or --threads - 1 when that is smaller."""
    if not 0 <= args.port < 65536 or args.threads < 1 or args.top_k < 1 or not 0 <= args.threshold <= 1:
        parser.error("check --port (0-65535), --threads, --top-k (>= 1) and --threshold (0..1)")
    if not 0 < args.max_upload_mb <= MAX_UPLOAD_MB:
        parser.error(f"--max-upload-mb {args.max_upload_mb:g}: must be above 0 and at most {MAX_UPLOAD_MB} (MiB)")
    if args.max_pixels < 1:
        parser.error("--max-pixels must be above 0")
    if args.history_max_live < 0:
        parser.error("--history-max-live must be 0 (no cap) or more")
    if args.base_cost is not None and args.base_data is None:
        parser.error("--base-cost needs --base-data: it is a share of those pictures")
    if args.base_cost is not None and not 0 < args.base_cost < 100:
        parser.error(f"--base-cost {args.base_cost:g}: must be above 0 and below 100 (percent)")
    camera = cameraopts.settings(parser, args)
    max_viewers = args.max_viewers
    if max_viewers is None:
        max_viewers = min(2, args.threads - 1)
    elif not 0 <= max_viewers < args.threads:
        parser.error(
            f"--max-viewers {max_viewers}: must be 0 to {args.threads - 1} (below --threads {args.threads}): "
            "each viewer holds a request thread, and one at least must stay free for /healthz, uploads and history"
        )
    try:
        token = resolve_token(args, environ)
    except ValueError as exc:
        parser.error(str(exc))
    return ServeConfig(
        model=args.model,
        labels=args.labels,
        runtime=args.runtime,
        host=args.host,
        port=args.port,
        threads=args.threads,
        token=token,
        top_k=args.top_k,
        threshold=args.threshold,
        db=args.db,
        history_live_every=args.history_live_every,
        history_max_live=args.history_max_live,
        max_upload=int(args.max_upload_mb * MiB),
        max_pixels=args.max_pixels,
        max_viewers=max_viewers,
        source=args.source,
        camera=camera,
        retries=args.retries,
        mqtt=mqttopts.settings(parser, args, environ),  # a bad broker URL: one line, exit 1
        teach_data=args.teach_data,
        base_data=args.base_data,
        base_cost=args.base_cost,
        review_dir=args.review_dir,
    )


def make_app(
    config: ServeConfig,
    notifier: notify.Notifier | None = None,
    on_give_up: Callable[[str], None] | None = None,
    publisher: Publisher | None = None,
) -> tuple[Any, LiveFeed | None, str | None]:
    """The WSGI app, the live feed (or None) and the token in force.

    `notifier` is fed by the live feed's frames; `on_give_up` is called when its camera failed for good;
    `publisher` (--mqtt) connects once the model is loaded and hears of every upload (the caller closes it)."""
    token = config.token
    if token is None and not is_loopback(config.host):
        token = secrets.token_urlsafe(18)
        log.log(logs.NOTICE, "binding %s: requests need the token %s", config.host, token)
    model = config.model or default_model()
    clf, sha = load_model(model, config.labels, config.runtime)  # in memory: the file may be replaced (SIGHUP)
    if publisher is not None:  # before the camera opens: a broker that cannot be used stops the start here
        publisher.start(clf.path.name, clf.labels)
    shared = SharedClassifier(clf, config.top_k, config.threshold, sha)
    history = History(config.db or default_db(), max_live_rows=config.history_max_live)
    here = history.path.parent
    deploy = Deployer(shared, here / "models", model, config.labels, config.runtime)
    teaching = Teaching(
        config.teach_data or here / "teach",
        here / "taught",
        deploy,
        base_data=config.base_data,
        base_cost=config.base_cost,
    )
    feed = None
    if config.source:
        source = parse_source(config.source, config.camera)
        if isinstance(source, OpenCVSource) and not source.live:  # a video file: played like a camera, looped
            source = LoopingVideo(source)
        give_up = notify.give_up_after(config.source, config.camera.stall_timeout, config.retries)
        feed = LiveFeed(
            shared, source, history, config.history_live_every, config.retries, notifier, on_give_up, give_up
        )
        feed.start()
    web = WebConfig(
        token=token,
        max_upload=config.max_upload,
        max_pixels=config.max_pixels,
        allowed_hosts=LOOPBACK_NAMES if is_loopback(config.host) else None,  # DNS rebinding
        max_viewers=config.max_viewers,
        on_upload=None if publisher is None else publisher.upload,
        review_dir=config.review_dir,
    )
    return create_app(shared, history, web, feed, deploy, teaching), feed, token


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM: the server shuts down cleanly, then exits 128 + signum.

    A KeyboardInterrupt because waitress's event loop lets only that, SystemExit and its own ExitNow
    out of its handlers: any other exception raised while it reads or writes a request is logged and
    swallowed, and the signal would be lost. Its run() then waits for the requests in flight, for
    SIGNAL_GRACE (see _serve).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@guarded
def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Start the server; SIGINT / SIGTERM stop it, release the camera, and exit 130 / 143; 1 on an error."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logs.setup(False)
    config = serve_config(parser, args, os.environ)
    waitress = require("waitress", "web")
    running: dict[str, Any] = {}  # what a signal must wake at once: the live feed, once there is one
    previous = _stop_on_signals(running)
    try:
        return _serve(waitress, config, running)
    except Stopped as stop:  # during start-up (loading the model, opening the camera) or a second signal
        if running.get("failed"):
            log.error("stopping: %s", running["failed"])
            return 1
        log.info("stopped by %s", signal.Signals(stop.signum).name)
        return 128 + stop.signum
    except EdgeClfError as exc:  # logged here rather than printed by `guarded`: the journal gets priority 3
        log.error("%s", exc)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve(waitress: Any, config: ServeConfig, running: dict[str, Any]) -> int:
    """Build the app, serve until a signal, shut down cleanly; 0, 128 + the signal's number, or 1 when the
    live source gave up."""
    malloc.return_large_blocks()  # request threads must not each keep their freed image buffers
    publisher = None
    if config.mqtt is not None:
        from edgeclf.edge_app.mqttpublish import Publisher

        publisher = Publisher(config.mqtt)
    try:
        return _serve_with(waitress, config, running, publisher)
    finally:
        if publisher is not None:
            publisher.close()  # 'offline' and DISCONNECT (bounded: 2 s)
            log.info("mqtt: %d reconnects, %d messages dropped", publisher.reconnects, publisher.drops)


def _serve_with(waitress: Any, config: ServeConfig, running: dict[str, Any], publisher: Publisher | None) -> int:
    notifier = notify.Notifier()
    app, feed, _token = make_app(config, notifier, partial(_give_up, running), publisher)
    running["feed"] = feed
    running["deploy"] = app.extensions["edgeclf_deploy"]  # SIGHUP reloads --model through it
    try:
        server = waitress.create_server(
            app,
            host=config.host,
            port=config.port,
            threads=config.threads,
            asyncore_loop_timeout=LOOP_TIMEOUT,
            # waitress spools a body to disk before Flask can refuse it: stop at the upload limit (+ form overhead)
            max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 64 * 1024,
        )
    except OSError as exc:
        if feed:
            feed.stop()
        raise EdgeClfError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    bound_shutdown(server, SIGNAL_GRACE)
    host = f"[{config.host}]" if ":" in config.host else config.host
    heartbeat = threading.Event()
    if feed is not None and publisher is not None:
        live = partial(_publish_live, feed, publisher, heartbeat)
        threading.Thread(target=live, name="edgeclf-mqtt-live", daemon=True).start()
    if feed is None:  # no frames to wait for: ready once listening, and alive while the server runs
        notifier.send("READY=1\nSTATUS=serving")
        if notifier.interval:
            beat = partial(_heartbeat, notifier, heartbeat)
            threading.Thread(target=beat, name="edgeclf-watchdog", daemon=True).start()
    try:
        log.info("serving http://%s:%s/ (waitress, %d threads)", host, server.effective_port, config.threads)
        server.run()  # returns on KeyboardInterrupt (Stopped too) once its requests end (SIGNAL_GRACE at most)
    except (Stopped, OSError):  # Stopped: a signal just before run() began
        pass
    finally:
        heartbeat.set()
        notifier.stopping()
        signum = running.get("signum", 0)
        if feed:
            feed.stop(timeout=1.0 if signum else 5.0)  # ends the streams, releases the camera; after a signal, fast
        server.close()
        if running.get("failed"):
            log.error("server stopped: %s", running["failed"])
        else:
            log.info("server stopped%s", f" by {signal.Signals(signum).name}" if signum else "")
    if running.get("failed"):
        return 1
    return 128 + signum if signum else 0


def _heartbeat(notifier: notify.Notifier, stop: threading.Event) -> None:
    """WATCHDOG=1 every half watchdog period until `stop`: serve without a camera has no frames to count."""
    while not stop.wait(notifier.interval):
        notifier.send("WATCHDOG=1")


def _publish_live(feed: LiveFeed, publisher: Publisher, stop: threading.Event) -> None:
    """Hand the live feed's newest result to MQTT every LIVE_POLL s until `stop` (the feed's own loop is
    left alone: the publisher debounces the state, and a look 5 times a second sees every label that lasts)."""
    seen = 0
    while not stop.wait(LIVE_POLL):
        frames, result, model, image = feed.latest()
        if result is None or frames == seen:
            continue
        seen = frames
        # the camera's frame, not the annotated feed.jpeg: the publisher shrinks it to a snapshot's size (a 12 MP
        # camera's full-size JPEG is ~800 KB, over the limit); the model is the one that answered since a swap
        publisher.frame(result, time.time(), feed.source.name, image, model)


def _give_up(running: dict[str, Any], reason: str) -> None:
    """The live camera failed for good: stop the server as a signal would, and exit 1 so Restart= fires.

    Runs in the feed's thread; the main thread is woken with SIGINT, whose handler stops waitress."""
    running["failed"] = f"the live source gave up: {reason}"
    main = running.get("main")
    if main is not None:
        signal.pthread_kill(main, signal.SIGINT)


def bound_shutdown(server: Any, grace: float) -> None:
    """Make the wait for the request threads at shutdown `grace` seconds in all, however often it is called.

    waitress's run() catches the signal's Stopped and calls the dispatcher's shutdown() with its default
    5 s wait (a server on several sockets calls it again from close()); an upload waiting for the decode
    budget can take 30 s. Threads still running after `grace` are left (daemon threads, gone with the
    process) and the queued requests cancelled.
    """
    dispatcher = server.task_dispatcher
    shutdown = dispatcher.shutdown
    deadline: list[float] = []

    def bounded(cancel_pending: bool = True, timeout: float = grace) -> bool:
        deadline[:] = deadline or [time.monotonic() + grace]
        return shutdown(cancel_pending=True, timeout=max(0.0, deadline[0] - time.monotonic()))

    dispatcher.shutdown = bounded


def _stop_on_signals(running: dict[str, Any]) -> dict[int, Any]:
    """SIGINT and SIGTERM raise Stopped in the main thread (once the live streams are told to end, so
    waitress's wait for its requests is short); SIGHUP reloads --model in a thread of its own (loading
    a model must not hold up the main thread's request loop); the previous handlers, to restore. Off
    the main thread (tests), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    running["main"] = threading.main_thread().ident

    def stop(signum: int, _frame: Any) -> None:
        running["signum"] = signum  # waitress's run() swallows the exception: this says why it returned
        feed = running.get("feed")
        if feed is not None:
            feed.request_stop()
        raise Stopped(signum)

    def reload(_signum: int, _frame: Any) -> None:
        deploy = running.get("deploy")
        if deploy is None:
            log.warning("SIGHUP before the server was ready: ignored")
            return
        threading.Thread(target=deploy.reload, name="edgeclf-reload", daemon=True).start()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    return previous


if __name__ == "__main__":
    raise SystemExit(main())
