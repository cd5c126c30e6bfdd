"""Issue 20: the project is imported, run and named as `edgeclf.*` only.

The repository keeps its folders (train/, convert/, edge_app/, benchmarks/) at the top, and pyproject.toml
installs them as edgeclf.train, edgeclf.convert, edgeclf.edge_app, edgeclf.benchmarks. From the checkout's
root a plain `import train` would still find the folder through the current directory and load a second copy
of the module under another name (a class imported as `train.x.Foo` is not `edgeclf.train.x.Foo`, and a
monkeypatch of "edge_app.run.x" misses the module the code runs), so no project file or test may use the old
names: not in an import, a dotted module string, a `-m` argument or code handed to `python -c`."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

OLD = ("edge_app", "train", "convert", "benchmarks", "models")
STAGES = ("edge_app", "train", "convert", "benchmarks")
# benchmarks/results/ holds the records of past runs (a script kept as it was run), not code that runs now
SOURCES = sorted(
    path
    for folder in (*STAGES, "tests")
    for path in (ROOT / folder).rglob("*.py")
    if "results" not in path.relative_to(ROOT).parts and "__pycache__" not in path.parts
    and path != Path(__file__).resolve()  # this file writes the old forms on purpose, to show they are caught
)
OLD_NAME = r"(?:edge_app|train|convert|benchmarks)(?:\.\w+)*"
# `from train.cli import main`, `import edge_app.run as run`, `import sys, train`; not "carved from train, ..." or
# `from edgeclf import train`
CODE_IN_A_STRING = re.compile(
    rf"\bfrom\s+{OLD_NAME}\s+import\b|(?<!edgeclf )\bimport\s+(?:[\w.]+,\s*)*{OLD_NAME}\s*(?:$|[;,]|\sas\b)", re.M
)
# what imports or runs a module by a name in a string: `runpy.run_module("train")`
BY_NAME = ("import_module", "run_module", "find_spec", "__import__")
DASH_M = re.compile(r"-m\s+(edge_app|train|convert|benchmarks)\b(?![\w/-])")


def is_old_module(name: str) -> bool:
    """`name` (dotted) starts with a module of this project under its old top-level name: edge_app.run,
    train.cli.main, "edge_app.capture.Grabber.__init__"; not "train.py" or "convert.log"."""
    parts = name.split(".")
    if parts[0] not in STAGES or len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return False
    second = ROOT / parts[0] / parts[1]
    return second.with_suffix(".py").is_file() or (second / "__init__.py").is_file()


def offences(path: Path) -> list[str]:
    return offences_in(ast.parse(path.read_text(), str(path)))


def offences_in(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in OLD]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in OLD:
            found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            # a message saying the old form is gone (each stage's __main__) may name it
            if is_old_module(text) or CODE_IN_A_STRING.search(text) or DASH_M.search(text) and "is gone" not in text:
                found.append(f"{line}: {text[:80]!r}")
            elif "import" in text:  # code for `python -c` or a launcher: checked as code
                try:
                    found += [f"{line}: in code {o}" for o in offences_in(ast.parse(text))]
                except SyntaxError:
                    pass  # prose
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in BY_NAME:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and str(first.value).split(".")[0] in OLD:
                found.append(f"{line}: {ast.unparse(node)[:80]}")
        elif isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            found += [f"{line}: -m {b}" for a, b in zip(words, words[1:]) if a == "-m" and b in OLD]
    return found


def test_the_sources_were_found():
    names = {str(p.relative_to(ROOT)) for p in SOURCES}
    assert {"edge_app/cli.py", "train/cli.py", "convert/cli.py", "benchmarks/cli.py", "tests/conftest.py"} <= names


def test_no_old_top_level_names():
    found = {str(path.relative_to(ROOT)): offences(path) for path in SOURCES}
    assert {name: lines for name, lines in found.items() if lines} == {}, "the pre-issue-20 names are used"


def test_the_check_catches_each_old_form(tmp_path):
    """The check above could fail: each form it forbids, written once, is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import train\nimport edge_app.run as run\nfrom convert.cli import main\n"
        "monkeypatch.setattr('edge_app.run.parse_source', None)\n"
        "cmd = [sys.executable, '-m', 'benchmarks', '--help']\n"
        "code = 'from edge_app.cli import main; main()'\n"
        "doc = 'run python -m train --epochs 1'\n"
        "code = 'import sys, convert'\n"
        "runpy.run_module('train', run_name='__main__')\n"
        "LAUNCHER = 'import runpy; runpy.run_module(\\'convert\\')'\n"
        "fine = ('train.py', 'edgeclf.train.cli', 'from edgeclf.edge_app import run', '-m edgeclf.train')\n"
        "fine = ('from edgeclf import train', 'carved from train, then', 'import train_test_split')\n"
    )
    assert sorted({int(o.split(":")[0]) for o in offences(bad)}) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_readme_and_ci_use_the_new_names():
    """Every `python -m ...` of the README and the CI scripts names edgeclf.*; the README's one note on the old
    forms (the line that says they are gone) is the exception."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / ".ci").iterdir())]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            old = DASH_M.search(line) or CODE_IN_A_STRING.search(line)
            if old and not (path.name == "README.md" and "gone" in line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert found == []


@pytest.mark.parametrize("stage", ["train", "convert", "benchmarks", "edge_app"])
def test_python_dash_m_old_name_says_it_is_gone(stage):
    """From the checkout's root `python -m train` still finds the folder through the current directory: its
    __main__ refuses, naming the new form, instead of running a second copy of the code under the old name."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # the current directory on sys.path
    done = subprocess.run([sys.executable, "-m", stage, "--help"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"python -m edgeclf.{stage}" in done.stderr and "is gone" in done.stderr, done.stderr
