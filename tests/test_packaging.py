"""Packaging: the base and edge installs never pull TensorFlow; every stage has a __main__; the edge pins keep
apt's numpy on a Pi; a wheel carries the models and runs outside the checkout."""

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edgeclf.edge_app.shipped import DEFAULT_MODEL
from tests.conftest import ROOT


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_light_installs_have_no_tensorflow():
    meta = project()
    extras = meta["optional-dependencies"]
    for deps in (meta["dependencies"], extras["edge"], extras["web"]):
        assert not any("tensorflow" in d or "keras" in d for d in deps), deps
    assert any(d.startswith("tensorflow-cpu") and "x86_64" in d for d in extras["train"])
    assert any(d.startswith("tensorflow>=") and "!= 'x86_64'" in d for d in extras["train"])
    assert any(d.startswith("ai-edge-litert") for d in extras["edge"])
    assert meta["scripts"]["edgeclf"] == "edgeclf.edge_app.cli:main"


# --- the device install: a wheel (from an sdist), not an editable checkout --------------------------------------


SHIPPED = "edgeclf/edge_app/models/"
LEFT_OUT = ("tutorial_cnn.keras", "airbench_whiten_float32.tflite", "airbench_whiten_float32.json")
# the repository's top-level folders, installed as edgeclf.<stage> (issue 20)
STAGES = ("edge_app", "train", "convert", "benchmarks")


def edge_requirement(name):
    edge = [Requirement(d) for d in project()["optional-dependencies"]["edge"]]
    found = [r for r in edge if canonicalize_name(r.name) == canonicalize_name(name)]
    assert len(found) == 1, name
    return found[0]


def test_edge_pins_keep_apt_numpy_1_24_on_bookworm():
    """Releases whose aarch64 wheels require numpy>=2 are out: pip would put numpy 2 into a Bookworm venv made
    with --system-site-packages, shadowing the apt numpy 1.24 that picamera2 / simplejpeg are built against.

    Read from the wheels' METADATA (cp311 and cp313, manylinux aarch64): opencv-python-headless 4.11.0.86 needs
    numpy>=1.23.5 (3.11) / >=1.26.0 (3.12+), 4.12.0.88 numpy>=2,<2.3, 4.13 / 4.14 / 5.0 numpy>=2; ml_dtypes
    (a dependency of ai-edge-litert >= 2.2) 0.5.4 needs numpy>=1.23.3 (3.11) / >=2.1.0 (3.13), 0.6.0 numpy>=2.
    opencv 4.10.0.84 is the first release built against numpy 2, which Trixie's apt numpy 2.2 needs."""
    opencv = edge_requirement("opencv-python-headless").specifier
    for version in ("4.10.0.84", "4.11.0.86"):
        assert opencv.contains(version), version
    for version in ("4.9.0.80", "4.12.0.88", "4.13.0.92", "5.0.0.93"):
        assert not opencv.contains(version), version
    ml_dtypes = edge_requirement("ml-dtypes").specifier
    assert ml_dtypes.contains("0.5.4") and not ml_dtypes.contains("0.6.0")
    litert = edge_requirement("ai-edge-litert").specifier
    assert litert.contains("2.3.0") and not litert.contains("2.0.3")  # 2.1.0: the first with cp313 aarch64 wheels
    numpy = edge_requirement("numpy").specifier
    assert numpy.contains("1.24.2") and numpy.contains("2.2.4")  # apt's on Bookworm and on Trixie


def copy_of_the_tree(dest):
    """The files a build reads, copied: a stale build/ or egg-info in the checkout cannot leak into the wheel."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("edge_app", "train", "convert", "benchmarks", "models"):
        shutil.copytree(ROOT / name, dest / name, ignore=skip)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel pip builds from the sdist of this tree (so both carry the models), offline."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    copy_of_the_tree(src)
    sdist_dir, wheel_dir = tmp / "sdist", tmp / "wheel"
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(sdist_dir)], cwd=src, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sdist = sdist_dir / done.stdout.strip().splitlines()[-1]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(sdist), "--no-deps", "--no-build-isolation", "-q", "-w", wheel_dir],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = wheel_dir.glob("edgeclf-*.whl")
    return found


def test_wheel_ships_the_models_and_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert SHIPPED + DEFAULT_MODEL.name in names
    assert SHIPPED + DEFAULT_MODEL.with_suffix(".json").name in names
    assert SHIPPED + "airbench_tiny_int8.tflite" in names and SHIPPED + "README.md" in names
    samples = sorted(p.name for p in (ROOT / "models" / "samples").iterdir())
    assert len(samples) >= 10
    for name in samples:
        assert SHIPPED + "samples/" + name in names, name
    for name in LEFT_OUT:
        assert SHIPPED + name not in names, name
    assert "edgeclf/edge_app/systemd/edgeclf.service" in names
    for page in ("base.html", "live.html", "teach.html"):
        assert f"edgeclf/edge_app/web/templates/{page}" in names, page
    assert "edgeclf/edge_app/web/static/style.css" in names
    assert not [n for n in names if n.startswith(("models/", "tests/", "edgeclf/models/", "edgeclf/tests/"))]


def test_wheel_installs_one_name_edgeclf(wheel):
    """Issue 20: the wheel's top level is `edgeclf/` and its dist-info, nothing else: no generic `train`,
    `convert`, `benchmarks` or `edge_app` in site-packages to collide with other projects or a user's train.py."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"edgeclf", "edgeclf-0.1.0.dist-info"}, sorted(tops)


def test_wheel_holds_every_stage_file_and_the_console_script(wheel):
    """Every module of the four stages and every file of edge_app (templates, styles, the unit) is in the wheel,
    under edgeclf/: a new subpackage that `packages` in pyproject.toml does not name would be left out, and
    `edgeclf` is declared. (benchmarks/results/ is the record of runs, not a part of the program.)"""
    names = set(zipfile.ZipFile(wheel).namelist())
    for stage in STAGES:
        found = (ROOT / stage).rglob("*" if stage == "edge_app" else "*.py")
        files = [p for p in found if p.is_file() and "__pycache__" not in p.parts and "results" not in p.parts]
        assert (ROOT / stage / "__main__.py") in files, stage  # `python -m edgeclf.<stage>` (test_entrypoints)
        missing = [f"edgeclf/{p.relative_to(ROOT)}" for p in files if f"edgeclf/{p.relative_to(ROOT)}" not in names]
        assert not missing, missing
    (info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    scripts = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "[console_scripts]\nedgeclf = edgeclf.edge_app.cli:main\n" in scripts, scripts


def clean_env():
    """This process's environment without what would point a child at the checkout or another model."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "EDGECLF_MODEL", "PYTHONSAFEPATH")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_wheel_installs_and_runs_outside_the_checkout(wheel, tmp_path):
    """A fresh venv, the wheel installed into it, run from a folder outside the checkout: the default model is
    found beside the installed code.

    The venv sees this environment's site-packages (numpy, OpenCV, ai-edge-litert, pip), as a Pi venv sees apt's,
    through a .pth file listing them after its own: unlike --system-site-packages that also works when this
    environment is itself a venv, and the .pth files in those folders (an editable install's finder) are not run.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python, env = venv / "bin" / "python", clean_env()
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    (site_packages / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    def call(*args, check=True):
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    call(python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel)
    # issue 20: a user's own train.py and benchmarks/ in the current directory neither shadow nor are shadowed
    (tmp_path / "train.py").write_text("raise SystemExit('the user train.py ran')\n")
    (tmp_path / "benchmarks").mkdir()
    found = "import importlib.util as u; print([u.find_spec(n) is None for n in ('edge_app', 'convert')])"
    assert call(python, "-c", found).stdout.strip() == "[True, True]"
    assert call(python, "-m", "edgeclf.train", "--help").stdout.startswith("usage: python -m edgeclf.train")
    assert call(python, "-m", "edgeclf.benchmarks", "--help").stdout.startswith("usage: python -m edgeclf.benchmarks")
    where = call(python, "-c", "import edgeclf.edge_app.shipped as s; print(s.__file__); print(s.DEFAULT_MODEL)").stdout
    code, model = (Path(line) for line in where.split())
    assert code.is_relative_to(site_packages) and model == site_packages / SHIPPED / DEFAULT_MODEL.name, where
    assert model.is_file()

    photos = tmp_path / "photos"
    photos.mkdir()
    for jpg in (ROOT / "models" / "samples").glob("*.jpg"):
        shutil.copy2(jpg, photos / jpg.name)
    edgeclf = venv / "bin" / "edgeclf"
    done = call(edgeclf, "run", "--source", f"{photos}/*.jpg", "--no-display", "--top-k", "1", "--threshold", "0")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 10 and all(r["source"].startswith(str(photos)) for r in records), done.stdout
    # the samples are named by class; the shipped model gets all 10 here (test_run_live asks >= 8 of the checkout)
    correct = [Path(r["source"]).stem for r in records if r["label"] == Path(r["source"]).stem]
    assert len(correct) >= 9, done.stdout
    done = call(edgeclf, "doctor", check=False)
    assert f"[ ok ] model: {model} loads" in done.stdout, done.stdout + done.stderr
    assert "sample images classified correctly" in done.stdout and done.returncode == 0, done.stdout
