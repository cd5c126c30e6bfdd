"""Packaging: the base and edge installs never pull TensorFlow; every stage has a __main__."""

import tomllib

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
    assert meta["scripts"]["edgeclf"] == "edge_app.cli:main"


def test_layout():
    for name in ("train", "convert", "edge_app", "benchmarks"):
        assert (ROOT / name / "__init__.py").is_file() and (ROOT / name / "__main__.py").is_file()
    for name in ("models", "tests", "README.md", ".ci/run", "pyproject.toml"):
        assert (ROOT / name).exists(), name
