"""What .ci/edge-job proves about its venv: the wheel with the edge extra, as a Pi user installs it.

Skipped elsewhere: in a checkout (editable install, dev extras) these facts are false on purpose."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from edgeclf import edge_app
from edgeclf.edge_app.shipped import DEFAULT_MODEL, MODELS_DIR, SAMPLES_DIR
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.device,
    pytest.mark.skipif(os.environ.get("EDGECLF_JOB") != "edge", reason="only in .ci/edge-job's venv"),
]

HOST_SIDE = ("tensorflow", "keras", "flask", "waitress", "PIL", "matplotlib")


def test_the_tests_import_the_installed_package_not_the_checkout():
    package = Path(edge_app.__file__).resolve().parent
    assert package.is_relative_to(Path(sys.prefix).resolve()), package
    assert not package.is_relative_to(ROOT), f"{package} is the checkout's: the installed wheel is shadowed"


def test_the_default_model_and_samples_are_installed_beside_the_code():
    package = Path(edge_app.__file__).resolve().parent
    assert MODELS_DIR == package / "models", MODELS_DIR
    assert DEFAULT_MODEL.is_file(), f"the wheel has no default model: {DEFAULT_MODEL}"
    assert len(list(SAMPLES_DIR.glob("*.jpg"))) == 10 and (SAMPLES_DIR / "clip.mp4").is_file()


@pytest.mark.parametrize("name", HOST_SIDE)
def test_host_side_packages_are_not_installed(name):
    assert importlib.util.find_spec(name) is None, f"{name} is importable in the edge-only venv"
