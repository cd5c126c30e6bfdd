"""The live MJPEG stream (/stream.mjpg): the feed's newest annotated JPEG to each viewer, with at most
`max_viewers` at once, since each viewer holds a request thread for as long as it watches."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from edgeclf.edge_app.errors import require
from edgeclf.edge_app.web.api import NO_FEED
from edgeclf.edge_app.web.config import WebContext
from edgeclf.edge_app.web.responses import error

RETRY_AFTER = "10"  # s a refused viewer is asked to wait


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` wrapped so that only its first call runs, from any thread."""
    done = threading.Lock()

    def call() -> None:
        if done.acquire(blocking=False):
            fn()

    return call


def register(app: Any, ctx: WebContext) -> None:
    """Add /stream.mjpg to `app`, with its own viewer slots."""
    flask = require("flask", "web")
    feed, max_viewers = ctx.feed, ctx.config.max_viewers
    viewers = threading.Semaphore(max(0, max_viewers))

    @app.get("/stream.mjpg")
    def stream() -> Any:
        if feed is None:
            return error(404, NO_FEED)

        if not viewers.acquire(blocking=False):
            refused = flask.make_response(
                error(
                    503,
                    f"too many live viewers: the server streams to {max_viewers} at once "
                    "(--max-viewers); close another live view or try again later",
                )
            )
            refused.headers["Retry-After"] = RETRY_AFTER
            return refused
        release = _once(viewers.release)

        def frames() -> Iterator[bytes]:
            seen = 0
            while feed.running:
                jpeg, seen_now = feed.wait_jpeg(seen)
                if jpeg is None:
                    continue
                # a stalled camera repeats its last frame every wait: a viewer who left is noticed
                # (the write fails) and gives its slot back even when no new frame comes
                seen = seen_now
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                yield b"\r\n\r\n" + jpeg + b"\r\n"

        try:
            response = flask.Response(frames(), mimetype="multipart/x-mixed-replace; boundary=frame")
            response.call_on_close(release)  # the server closes the response when the client goes away
        except BaseException:
            release()
            raise
        return response
