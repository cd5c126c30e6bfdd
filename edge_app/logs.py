"""Logging for the long-running commands (`run`, `serve`): levels, and the journal's format under systemd.

On a terminal a line reads `warning: message` (info lines carry no prefix: `summary: ...`,
`serving http://...`). When stderr is the journal (systemd sets JOURNAL_STREAM to its device and
inode), each line starts with its syslog priority, `<4>message`, and carries no timestamp:
journald adds the time and keeps the priority, so `journalctl -p warning` finds the warnings.
JSON result lines are not logs: they stay on stdout.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

NOTICE = 25  # between INFO and WARNING, as syslog's notice: a normal but significant event (a camera reopened)
logging.addLevelName(NOTICE, "NOTICE")

LOGGERS = ("edgeclf", "waitress")  # ours (edgeclf.<stage>.* modules, the web store edgeclf.web), serve's WSGI server
PLAIN = {logging.INFO: "", NOTICE: "note: "}  # other levels: their name, `warning: `
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (NOTICE, 5), (logging.INFO, 6))


def priority(level: int) -> int:
    """The syslog priority of a logging level: 3 error, 4 warning, 5 notice, 6 info, 7 debug."""
    return next((value for least, value in PRIORITIES if level >= least), 7)


class PlainFormatter(logging.Formatter):
    """`warning: message`, `note: message`, `error: message`; info lines as they are."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = PLAIN.get(record.levelno, f"{record.levelname.lower()}: ")
        return f"{prefix}{super().format(record)}"


class JournalFormatter(logging.Formatter):
    """`<priority>message` on every line (journald reads the prefix of each line), no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        level = priority(record.levelno)
        return "\n".join(f"<{level}>{line}" for line in super().format(record).splitlines() or [""])


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (tests and wrappers replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - a text stream
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def to_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether stderr is the journal: JOURNAL_STREAM is set and names stderr's device and inode.

    A stderr without a file descriptor (captured by a test or a wrapper) trusts the variable; one that
    was redirected elsewhere (a child of the service writing to a file) does not match it."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return True
    return value == f"{st.st_dev}:{st.st_ino}"


def setup(verbose: bool = False) -> None:
    """Send the app's log records to stderr in the terminal or journal format; debug records when `verbose`.

    Called by `run` and `serve` at start; calling it again replaces the handler it installed."""
    handler = StderrHandler()
    handler.setFormatter(JournalFormatter() if to_journal() else PlainFormatter())
    handler.set_name("edgeclf")
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "edgeclf"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        if name != "waitress":  # its own info lines (a client went away) stay quiet, as before
            logger.setLevel(logging.DEBUG if verbose else logging.INFO)
