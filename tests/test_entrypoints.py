"""`edgeclf X` and `python -m edgeclf.X` are the same code path."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

STAGES = {
    "train": "edgeclf.train",
    "convert": "edgeclf.convert",
    "run": "edgeclf.edge_app",
    "bench": "edgeclf.benchmarks",
    "serve": "edgeclf.edge_app.web.serve",
    "doctor": "edgeclf.edge_app.doctor",
}


@pytest.mark.parametrize("command, module", STAGES.items())
def test_module_and_console_script_agree(command, module):
    by_module = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert by_module.returncode == 0, by_module.stderr
    assert by_module.stdout.startswith(f"usage: python -m {module}")
    exe = shutil.which("edgeclf")
    if exe is None:
        pytest.skip("edgeclf console script not installed")
    by_script = subprocess.run([exe, command, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert by_script.returncode == 0, by_script.stderr

    # same parser and help text; only the program name (and so the line wrapping) differs
    def words(text, prog):
        return text.replace(prog, "PROG").split()

    assert words(by_script.stdout, f"edgeclf {command}") == words(by_module.stdout, f"python -m {module}")


def test_bad_option_exit_code_from_the_shell():
    cmd = [sys.executable, "-m", "edgeclf.convert", "x", "--bogus"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr


def test_train_out_is_a_file(tmp_path):
    from edgeclf.train.cli import main

    target = tmp_path / "file"
    target.write_text("x")
    assert main(["--out", str(target)]) == 1
