"""Logging of `run` and `serve`: `level: message` on a terminal, `<priority>message` when stderr is the journal."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeclf.edge_app import logs
from edgeclf.edge_app.shipped import SAMPLES_DIR

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

ROOT = Path(__file__).resolve().parent.parent
LEVELS = [  # level, message, on a terminal, in the journal
    (logging.DEBUG, "d", "debug: d", "<7>d"),
    (logging.INFO, "summary: i", "summary: i", "<6>summary: i"),
    (logs.NOTICE, "n", "note: n", "<5>n"),
    (logging.WARNING, "w", "warning: w", "<4>w"),
    (logging.ERROR, "e", "error: e", "<3>e"),
    (logging.CRITICAL, "c", "critical: c", "<2>c"),
]


def emit_all(capsys) -> list[str]:
    log = logging.getLogger("edgeclf.edge_app.somewhere")
    for level, message, _, _ in LEVELS:
        log.log(level, message)
    return capsys.readouterr().err.splitlines()


@pytest.fixture(autouse=True)
def quiet_afterwards():
    yield
    logs.setup(False)


def test_plain_level_prefixes_on_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logs.setup(verbose=True)
    assert emit_all(capsys) == [plain for _, _, plain, _ in LEVELS]
    logs.setup(verbose=False)  # again: no second handler, and no debug
    assert emit_all(capsys) == [plain for level, _, plain, _ in LEVELS if level > logging.DEBUG]


def test_syslog_priorities_without_timestamps_for_the_journal(monkeypatch, capsys):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # stderr is captured here (no file descriptor): trusted
    logs.setup(verbose=True)
    assert emit_all(capsys) == [journal for _, _, _, journal in LEVELS]
    logging.getLogger("edgeclf.web").warning("two\nlines")  # the web store's logger too; each line its priority
    assert capsys.readouterr().err == "<4>two\n<4>lines\n"


def test_journal_stream_must_name_the_stderr_it_came_with(tmp_path, monkeypatch):
    with open(tmp_path / "err.txt", "w") as err:
        monkeypatch.setattr(sys, "stderr", err)
        st = os.fstat(err.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # a child whose stderr was redirected
        assert not logs.to_journal()
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.to_journal()


def journal_process(cmd, tmp_path, env=None):
    """Start `cmd` with stderr in a file that JOURNAL_STREAM names, as systemd does: (process, stderr path)."""
    err_path = tmp_path / "stderr.txt"
    err = open(err_path, "w")
    st = os.fstat(err.fileno())
    # no PYTHONPATH: the child runs the edge_app this interpreter has installed (the wheel, in the CI jobs' venvs)
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", **(env or {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
    err.close()
    return proc, err_path


def test_run_under_systemd_logs_with_priorities_and_keeps_json_on_stdout(shipped_models, tmp_path):
    image = SAMPLES_DIR / "cat.jpg"
    blocker = tmp_path / "file"
    blocker.write_text("a file where the collect folder should be")
    cmd = [sys.executable, "-m", "edgeclf.edge_app", "--model", str(shipped_models["default"]), "--source", str(image)]
    proc, err_path = journal_process([*cmd, "--collect", str(blocker / "sub"), "--threshold", "1"], tmp_path)
    out, _ = proc.communicate(timeout=60)
    err = [line for line in err_path.read_text().splitlines() if not line.startswith("INFO: Created TensorFlow")]
    assert proc.returncode == 0, err
    assert out.startswith('{"time"')
    assert any(line.startswith("<4>cannot collect into") and "collecting stopped" in line for line in err), err
    assert err[-1].startswith("<6>summary: 1 frames in ")


def test_serve_under_systemd_logs_with_priorities(shipped_models, tmp_path):
    pytest.importorskip("flask", reason="serve needs the web extra")  # not in .ci/edge-job's venv
    cmd = [sys.executable, "-m", "edgeclf.edge_app.web.serve", "--model", str(shipped_models["default"]), "--port", "0"]
    proc, err_path = journal_process([*cmd, "--db", str(tmp_path / "h.sqlite3")], tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "<6>serving http://127.0.0.1:" not in err_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "<6>server stopped by SIGTERM" in err_path.read_text().splitlines()
