"""`edgeclf doctor`: the checks on this machine, picamera2's version, and the systemd unit `--unit` writes."""

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from edgeclf.edge_app import doctor
from edgeclf.edge_app.doctor import main as doctor_main
from edgeclf.edge_app.notify import watchdog_seconds
from tests import fakes
from tests.conftest import ROOT

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

SHIPPED_UNIT = ROOT / "edge_app" / "systemd" / "edgeclf.service"
# The README's Raspberry Pi install: a user named edgeclf, the clone in ~/edgeclf, the venv in ~/edgeclf/.venv
README_EXAMPLE = [
    "--user",
    "edgeclf",
    "--venv",
    "/home/edgeclf/edgeclf/.venv",
    "--workdir",
    "/home/edgeclf/edgeclf",
    "--source",
    "picamera2",
]


def test_doctor_on_this_machine(capsys):
    code = doctor_main([])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in (
        "machine:",
        "python:",
        "numpy:",
        "ai_edge_litert:",
        "opencv:",
        "display:",
        "model:",
        "classification:",
    ):
        assert name in out
    assert out.strip().splitlines()[-1].endswith("0 failed")


def test_doctor_reports_a_broken_model_with_a_fix(tmp_path, capsys):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"garbage" * 20)
    assert doctor_main(["--model", str(junk)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] model:" in out and "fix: pass --model" in out and "1 failed" in out


def test_doctor_takes_labels_for_a_model_without_metadata(foreign_model, capsys):
    foreign, labels = foreign_model
    assert doctor_main(["--model", str(foreign)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] model:" in out and "pass --labels FILE" in out and "--labels" in out.split("fix:")[1]
    doctor_main(["--model", str(foreign), "--labels", str(labels)])  # classification may fail: foreign normalisation
    out = capsys.readouterr().out
    assert f"[ ok ] model: {foreign} loads" in out and "sample images classified" in out


def test_doctor_prints_the_cpu_line_the_benchmark_report_records(monkeypatch, capsys):
    """`[ ok ] cpu: <edgeclf.edge_app.cpuinfo summary>`; on a throttled Pi it warns, since timings there mean little."""
    from edgeclf.edge_app import cpuinfo

    data = ROOT / "tests" / "data" / "cpuinfo"
    monkeypatch.setattr(cpuinfo, "CPUINFO", data / "pi4_64bit.txt")
    monkeypatch.setattr(cpuinfo, "CPUFREQ_MAX", data / "absent")
    monkeypatch.setattr(cpuinfo, "throttled", lambda: None)
    (check,) = doctor.check_cpu()
    assert check.line() == "[ ok ] cpu: Raspberry Pi 4 Model B Rev 1.4, Cortex-A72, 4 cores, asimd: int8 dot-product no"
    monkeypatch.setattr(cpuinfo, "throttled", lambda: "0x50005")  # under-voltage and throttled now
    (check,) = doctor.check_cpu()
    assert check.status == "warn" and check.detail.endswith("int8 dot-product no, throttled 0x50005")
    assert "power supply" in check.fix
    monkeypatch.setattr(cpuinfo, "throttled", lambda: "0x0")
    assert doctor.check_cpu()[0].status == "ok"
    monkeypatch.undo()
    doctor_main([])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("[ ok ] cpu: "))
    assert line == f"[ ok ] cpu: {cpuinfo.describe().summary()}"


# --- picamera2: present, recent enough (capture_arrays(wait=) timeouts, cancel_all_and_flush: 0.3.20) -----------


@pytest.mark.parametrize(
    ("version", "status"),
    [("0.3.19", "FAIL"), ("0.2.3", "FAIL"), ("0.3.20", "ok"), ("0.3.27", "ok"), ("0.4.0", "ok"), (None, "warn")],
)
def test_picamera2_version(version, status):
    check = doctor.picamera2_version_check(version)
    assert check.name == "picamera2" and check.status == status, check
    if status == "ok":
        assert check.detail.startswith(version) and not check.fix
    else:
        assert "0.3.20" in check.detail
        assert check.fix == "sudo apt update && sudo apt install --only-upgrade python3-picamera2"


def fake_version(monkeypatch, picamera2_version):
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda dist: picamera2_version if dist == "picamera2" else real(dist))


def test_doctor_fails_an_old_picamera2_and_names_a_recent_one(monkeypatch, capsys):
    fakes.install_picamera2(monkeypatch)  # a module without __spec__, as the fake is
    fake_version(monkeypatch, "0.3.19")
    out = "\n".join(c.line() for c in doctor.check_camera_and_display())
    assert "[FAIL] picamera2: 0.3.19" in out and "--only-upgrade python3-picamera2" in out
    fake_version(monkeypatch, "0.3.27")
    out = "\n".join(c.line() for c in doctor.check_camera_and_display())
    assert "[ ok ] picamera2: 0.3.27" in out and "FAIL" not in out
    assert "[ ok ] Pi camera: " in out  # the fake lists one CSI camera


def test_doctor_says_how_to_get_picamera2_on_a_pi(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails with ModuleNotFoundError
    monkeypatch.setattr("edgeclf.edge_app.picamera.pi_model", lambda path=None: "Raspberry Pi 5 Model B Rev 1.0")
    (check,) = [c for c in doctor.check_camera_and_display() if c.name == "picamera2"]
    assert check.status == "warn" and "sudo apt install python3-picamera2" in check.fix
    assert "--system-site-packages" in check.fix


# --- doctor --unit: a systemd unit for `edgeclf run`, filled in for this user, venv and folder ------------------


def parse_unit(text):
    """A strict reading of a unit file: [Section] headers, Key=Value lines, comments; no key twice in a section."""
    sections, current = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if re.fullmatch(r"\[[A-Za-z]+\]", line):
            current = sections.setdefault(line[1:-1], {})
            continue
        match = re.fullmatch(r"([A-Za-z]+)=(.*)", line)
        assert match and current is not None, f"line {number}: {line!r}"
        key, value = match.groups()
        assert key not in current, f"line {number}: {key} twice"
        assert value == value.strip() and "\\\n" not in line, f"line {number}: {line!r}"
        current[key] = value
    return sections


def split_exec(value):
    """ExecStart= as systemd reads it: %% specifiers first, then words in C-style quotes, then $$ -> $."""
    assert not re.search(r"%[^%]", value.replace("%%", "")), value  # no other specifier may slip through
    value = value.replace("%%", "%")
    words, i = [], 0
    while i < len(value):
        if value[i].isspace():
            i += 1
            continue
        word, quote = "", None
        while i < len(value) and (quote or not value[i].isspace()):
            c = value[i]
            if c == "\\":
                nxt = value[i + 1]
                if nxt == "x":
                    word, i = word + chr(int(value[i + 2 : i + 4], 16)), i + 4
                    continue
                word, i = word + {"n": "\n", "t": "\t"}.get(nxt, nxt), i + 2
                continue
            if quote is None and c in "\"'":
                quote = c
            elif c == quote:
                quote = None
            else:
                word += c
            i += 1
        assert quote is None, f"unbalanced quotes in {value!r}"
        words.append(word.replace("$$", "$"))
    return words


def unit_for(args, capsys):
    code = doctor_main(["--unit", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, parse_unit(out)


def test_unit_for_the_pi_camera(capsys):
    text, unit = unit_for(
        ["--user", "alice", "--venv", "/opt/edge venv", "--workdir", "/srv/edgeclf", "--source", "picamera2"], capsys
    )
    service = unit["Service"]
    assert split_exec(service["ExecStart"]) == [
        "/opt/edge venv/bin/edgeclf",
        "run",
        "--source",
        "picamera2",
        "--no-display",
    ]
    assert service["User"] == "alice" and service["WorkingDirectory"] == "/srv/edgeclf"
    assert service["SupplementaryGroups"] == "video"
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == str(watchdog_seconds("picamera2", 5.0, 5)) == "72"
    assert int(service["TimeoutStartSec"]) > int(service["WatchdogSec"])
    assert service["Restart"] == "on-failure" and int(service["RestartSec"]) > 0
    assert service["SuccessExitStatus"] == "130 143"
    assert service["Environment"] == "PYTHONUNBUFFERED=1"
    assert "After" not in unit["Unit"] and "Wants" not in unit["Unit"] and "network" not in text
    assert "--collect" not in text
    assert unit["Install"] == {"WantedBy": "multi-user.target"}


def test_unit_for_a_stream_waits_for_the_network(capsys):
    _, unit = unit_for(["--source", "rtsp://cam.local:554/stream", "--retries", "2", "--collect", "/data/x"], capsys)
    assert unit["Unit"]["After"] == "network-online.target" and unit["Unit"]["Wants"] == "network-online.target"
    service = unit["Service"]
    assert service["WatchdogSec"] == str(watchdog_seconds("rtsp://cam.local:554/stream", 5.0, 2))
    assert int(service["WatchdogSec"]) > 30 + 1.5 + 2 * (30 + 30)  # FFmpeg's 30 s open and read timeouts
    words = split_exec(service["ExecStart"])
    assert words[1:] == ["run", "--source", "rtsp://cam.local:554/stream", "--retries", "2", "--collect", "/data/x",
                         "--no-display"]  # fmt: skip
    for url in ("http://cam/video.mjpg", "HTTPS://cam/x"):
        _, unit = unit_for(["--source", url], capsys)
        assert unit["Unit"]["Wants"] == "network-online.target"


def test_unit_follows_the_stall_timeout(capsys):
    _, unit = unit_for(["--source", "picamera2", "--stall-timeout", "2", "--retries", "3"], capsys)
    assert unit["Service"]["WatchdogSec"] == str(watchdog_seconds("picamera2", 2.0, 3))
    assert int(unit["Service"]["WatchdogSec"]) < 72


def test_unit_defaults_to_this_user_venv_and_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _, unit = unit_for(["--source", "picamera2", "--no-display"], capsys)
    service = unit["Service"]
    assert service["User"] == pwd.getpwuid(os.geteuid()).pw_name
    assert service["WorkingDirectory"] == str(tmp_path)
    words = split_exec(service["ExecStart"])
    assert words[0] == os.path.join(sys.prefix, "bin", "edgeclf")
    assert words.count("--no-display") == 1


def test_unit_quotes_what_systemd_would_split_or_expand(tmp_path, capsys):
    awkward = str(tmp_path / "my photos" / "100% $HOME \"quoted\" 'single' back\\slash ;")
    _, unit = unit_for(["--source", awkward, "--labels", "a\tb.txt"], capsys)
    assert split_exec(unit["Service"]["ExecStart"])[2:6] == ["--source", awkward, "--labels", "a\tb.txt"]


def stub_venv(venv):
    """A venv folder whose bin/edgeclf is an executable stub: `systemd-analyze verify` checks that ExecStart exists."""
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "edgeclf").write_text("#!/bin/sh\n")
    (venv / "bin" / "edgeclf").chmod(0o755)
    return venv


def systemd_verify(path):
    """systemd's own reading of a unit: exit status 0 and not one warning (an unknown key is only a warning)."""
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path, capsys):
    venv = stub_venv(tmp_path / "a venv")
    for source in ("picamera2", "rtsp://cam/stream", str(tmp_path / '50% of $PATH\'s "photos"/*.jpg')):
        text, _ = unit_for(["--user", "root", "--venv", str(venv), "--workdir", str(tmp_path), "--source", source],
                           capsys)  # fmt: skip
        path = tmp_path / "edgeclf.service"
        path.write_text(text)
        systemd_verify(path)


def test_shipped_unit_is_what_doctor_writes_for_the_readme_install(tmp_path, capsys):
    text, _ = unit_for(README_EXAMPLE, capsys)
    assert SHIPPED_UNIT.read_text() == text, "regenerate it: edgeclf doctor --unit " + shlex.join(README_EXAMPLE)
    assert "edgeclf doctor --unit " + shlex.join(README_EXAMPLE) in (ROOT / "README.md").read_text()
    assert "edgeclf doctor --unit " + shlex.join(README_EXAMPLE) in text  # the header says how it was made
    # what the shipped file makes systemd do, read from the file by systemd's rules and written out here
    service = parse_unit(SHIPPED_UNIT.read_text())["Service"]
    assert split_exec(service["ExecStart"]) == [
        "/home/edgeclf/edgeclf/.venv/bin/edgeclf", "run", "--source", "picamera2", "--no-display"
    ]  # fmt: skip
    assert (service["User"], service["WorkingDirectory"]) == ("edgeclf", "/home/edgeclf/edgeclf")
    assert (service["Type"], service["WatchdogSec"], service["Restart"]) == ("notify", "72", "on-failure")
    if shutil.which("systemd-analyze") is None:
        return  # the rest needs systemd's own parser
    venv = stub_venv(tmp_path / "venv")  # the one change: an ExecStart that exists on this machine
    verify = tmp_path / "edgeclf.service"
    verify.write_text(SHIPPED_UNIT.read_text().replace("/home/edgeclf/edgeclf/.venv/", f"{venv}/"))
    systemd_verify(verify)


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--top-k", "0"],
        ["--retries", "many"],
        ["--display"],
        ["--source", "picamera2", "--venv"],
        ["--source", "a\nb"],
    ],
)
def test_unit_with_bad_run_options_is_one_line_and_exit_2(args, capsys):
    assert doctor_main(["--unit", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "--unit: error: " in err, err


def test_unit_options_need_unit(capsys):
    with pytest.raises(SystemExit) as exit_:
        doctor_main(["--user", "alice"])
    assert exit_.value.code == 2 and "--unit" in capsys.readouterr().err


def test_headless_opencv_hint_says_how_to_get_a_window(monkeypatch):
    """The reason `gui_available()` gives (doctor's display line, run --display's error) names the GUI builds,
    with the same version pin as the edge extra's headless OpenCV."""
    import tomllib
    from types import SimpleNamespace

    from packaging.requirements import Requirement

    from edgeclf.edge_app import overlay

    monkeypatch.setenv("DISPLAY", ":0")
    build = "General configuration\n  GUI:                           NONE\n"
    monkeypatch.setattr(overlay.preprocess, "_cv2", lambda: SimpleNamespace(getBuildInformation=lambda: build))
    shown, why = overlay.gui_available()
    edge = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["edge"]
    (headless,) = [Requirement(d) for d in edge if d.startswith("opencv-python-headless")]
    assert not shown and len(why.splitlines()) == 1
    assert "pip uninstall opencv-python-headless" in why, why
    gui = re.search(r"pip install '(opencv-python[^']*)'", why)
    assert gui and Requirement(gui[1]).name == "opencv-python", why
    assert Requirement(gui[1]).specifier == headless.specifier, why
    assert "python3-opencv" in why and "--system-site-packages" in why, why


def readme_pi_commands():
    """The `edgeclf ...` lines of the README's Raspberry Pi section, as argument lists (comments and > dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Raspberry Pi (")[1].split("\n## ")[0]
    commands, in_code = [], False
    for line in section.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        elif in_code and line.strip().startswith("edgeclf "):
            words = shlex.split(line.strip(), comments=True)
            commands.append(words[1 : words.index(">")] if ">" in words else words[1:])
    return commands


def test_readme_pi_commands_are_ones_the_code_takes(tmp_path, monkeypatch, capsys):
    from edgeclf.edge_app.run import _check, build_parser

    monkeypatch.chdir(ROOT)
    commands = readme_pi_commands()
    assert ["doctor"] in commands and ["doctor", "--unit", "--source", "picamera2"] in commands
    assert any(c[0] == "run" and "models/samples/*.jpg" in c for c in commands)
    for command in commands:
        if command[0] == "run":
            parser = build_parser()
            _check(parser, parser.parse_args(command[1:]))
        elif "--unit" in command:
            assert doctor_main(command[1:]) == 0, capsys.readouterr().err
        else:
            doctor.build_parser().parse_args(command[1:])
