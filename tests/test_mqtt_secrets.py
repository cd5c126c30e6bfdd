"""The broker's password never reaches an error line: run's, doctor's, or the journal's."""

from __future__ import annotations

import pytest

from edgeclf.edge_app.doctor import main as doctor_main
from edgeclf.edge_app.mqttopts import _redacted
from edgeclf.edge_app.run import main as run_main

SAMPLE = "models/samples/cat.jpg"
# an '@' in the password (not percent-encoded), a '/' in it (which ends the host part for urlsplit), both
URLS = [
    ("mqtt://bob:hunter@2secret@broker/x", ("hunter", "2secret")),
    ("mqtt://bob:s3cr/et@broker", ("s3cr", "et@")),
    ("mqtt://bob:a/b@c@broker:1883", ("a/b", "b@c")),
]


@pytest.mark.parametrize(("url", "secrets"), URLS)
def test_run_does_not_print_the_password(url, secrets, capsys):
    assert run_main(["--source", SAMPLE, "--mqtt", url]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --mqtt mqtt://bob:***@broker"), err
    assert not any(s in err for s in secrets), err


@pytest.mark.parametrize(("url", "secrets"), URLS)
def test_doctor_does_not_print_the_password(url, secrets, capsys):
    assert doctor_main(["--mqtt", url]) == 1
    out, err = capsys.readouterr()
    assert "mqtt://bob:***@broker" in out + err, out + err
    assert not any(s in out + err for s in secrets), out + err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://u:pw@h:1883", "mqtt://u:***@h:1883"),
        ("mqtt://u@h", "mqtt://u@h"),  # no password, nothing to hide
        ("mqtt://h/a", "mqtt://h/a"),
        ("mqtts://u:p@ss@h", "mqtts://u:***@h"),
        ("mqtt://:pw@h", "mqtt://:***@h"),
        ("mqtt://me@corp:pw@h", "mqtt://me@corp:***@h"),  # an '@' in the user name
        ("mqtt://a/b:pw@h", "mqtt://a/b:***@h"),
    ],
)
def test_redacted(url, shown):
    assert _redacted(url) == shown
