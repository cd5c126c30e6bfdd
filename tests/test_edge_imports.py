"""The edge side never loads TensorFlow, Keras or the host-side stages."""

import subprocess
import sys

from tests.conftest import ROOT

CHECK = """
import importlib, sys
for name in ("cli", "run", "classifier", "datasets", "metrics", "picamera", "capture", "live", "overlay", "doctor",
             "web.app", "web.serve", "web.feed", "web.store", "web.uploads"):
    importlib.import_module("edgeclf.edge_app." + name)
from edgeclf.edge_app.run import main
code = main(["--model", sys.argv[1], "--source", sys.argv[2], "--save-video", sys.argv[3]])
host = ("tensorflow", "keras", "flask", "waitress", "PIL", "matplotlib")
stages = ("edgeclf.train", "edgeclf.convert", "edgeclf.benchmarks")
# the stages under their pre-issue-20 names (a second copy of the code) must not appear either
old = ("edge_app", "train", "convert", "benchmarks")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in host + old or m.startswith(stages))
print("HEAVY", heavy, "CODE", code)
"""


def test_run_imports_no_tensorflow(converted, colour_folder, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK,
            str(converted["int8"]),
            str(colour_folder / "test" / "red"),
            str(tmp_path / "out.mp4"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert "HEAVY [] CODE 0" in result.stdout, result.stdout + result.stderr


def test_sources_never_import_host_side():
    """Every module under edge_app/, web/ included; flask and waitress only under edge_app/web/. (Old names too:
    tests/test_namespace.py forbids them everywhere.)"""
    offenders = []
    paths = sorted((ROOT / "edge_app").rglob("*.py"))
    assert ROOT / "edge_app" / "web" / "serve.py" in paths
    for path in paths:
        web = path.parent.name == "web"
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped.startswith(("import ", "from ")):
                continue
            name = stripped.split()[1]
            # `from edgeclf import train` names the stage after `import`
            tops = stripped.split(" import ")[1].replace(",", " ").split() if name == "edgeclf" else [name]
            for top in (t.removeprefix("edgeclf.").split(".")[0] for t in tops):
                if top in ("tensorflow", "keras", "train", "convert", "benchmarks") or (
                    top in ("flask", "waitress") and not web
                ):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert offenders == []


def test_the_web_contract_names_every_module_outside_web():
    """import-linter has no 'all but web/' source: pyproject lists the modules, and a new one must join it."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["forbidden_modules"] == ["edgeclf.edge_app.web"]]
    modules = {f"edgeclf.edge_app.{p.stem}" for p in (ROOT / "edge_app").glob("*.py") if p.stem != "__init__"}
    assert set(contract["source_modules"]) == modules
