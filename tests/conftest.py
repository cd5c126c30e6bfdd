"""Shared fixtures: synthetic colour data, a tiny trained Keras model, its conversions, the shipped models, image
folders; and the check that keeps Keras-built fixtures out of the `device` tests."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
COLOURS = ("red", "green", "blue")
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Fixtures that build their model with Keras: a `device` test that asks for one is skipped in the CI jobs' venvs
# (the edge extra only), so it would pass there without having run; pytest_collection_modifyitems refuses it.
KERAS_FIXTURES = ("tiny_keras_model", "converted")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a CI job (EDGECLF_JOB set), collection fails if a `device` test needs a Keras-built fixture."""
    if not os.environ.get("EDGECLF_JOB"):
        return  # the dev environment has Keras: those tests run there
    offenders = []
    for item in items:
        # fixturenames is the closure: a fixture that itself asks for `converted` is caught too
        keras_built = [name for name in KERAS_FIXTURES if name in getattr(item, "fixturenames", ())]
        if keras_built and item.get_closest_marker("device"):
            offenders.append(f"{item.nodeid} (uses {', '.join(keras_built)})")
    if offenders:
        raise pytest.UsageError(
            f"{len(offenders)} device test(s) build their model with Keras, which the {os.environ['EDGECLF_JOB']} "
            "job's venv lacks, so they would be skipped silently; use the shipped_models fixture instead: "
            + "; ".join(offenders)
        )


def colour_images(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 images whose dominant channel is the class: easy to learn, confident outputs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = rng.integers(0, 90, size=(n, size, size, 3)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, :, :, label] = rng.integers(150, 255, size=(size, size))
    return images, labels.astype(np.int64)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> object:
    """Poll `predicate` until it returns something true, and return that; fail the test, naming `what`, once
    `timeout` seconds have passed. For waiting on another thread or process instead of sleeping a guess."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)  # the polling interval: how soon a change is seen, not how long anything takes
    return value


def write_image_folder(root: Path, per_class: int = 12, size: int = 16, seed: int = 0) -> Path:
    """<root>/train/<colour>/*.png and <root>/test/<colour>/*.png from colour_images."""
    import cv2

    for split, offset in (("train", 0), ("test", 100)):
        images, labels = colour_images(per_class * 6, size, seed + offset)
        counts = dict.fromkeys(range(3), 0)
        for image, label in zip(images, labels):
            if counts[label] >= per_class:
                continue
            folder = root / split / COLOURS[label]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{counts[label]:03d}.png"), image[:, :, ::-1])
            counts[label] += 1
    return root


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory):
    """A small CNN trained for a few seconds on colour_images; saved as .keras."""
    # skipped where Keras is missing; a `device` test may not use it (pytest_collection_modifyitems): shipped_models
    keras = pytest.importorskip("keras", reason="builds its model with Keras (the train extra)")

    from edgeclf.edge_app import preprocess
    from edgeclf.edge_app.contract import InputSpec

    keras.utils.set_random_seed(1)
    spec = InputSpec(16, 16)
    x, y = colour_images(600, 16, seed=1)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, activation="relu"),  # 1,152 weights: enough for dynamic-range quantization
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="tiny",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(preprocess.normalize(x, spec), y, epochs=8, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    model.save(path)
    return model, path


@pytest.fixture(scope="session")
def converted(tiny_keras_model, tmp_path_factory):
    """The tiny model converted in every mode, written with metadata: {mode: path}."""
    from edgeclf.convert import modes
    from edgeclf.convert.tflite import to_tflite
    from edgeclf.edge_app import metadata, preprocess
    from edgeclf.edge_app.contract import InputSpec, ModelInfo

    model, _ = tiny_keras_model
    spec = InputSpec(16, 16)
    calib = preprocess.normalize(colour_images(100, 16, seed=2)[0], spec)
    out = tmp_path_factory.mktemp("tflite")
    paths = {}
    for name in modes.QUANT_MODES:
        mode, io = modes.get(name)
        data = to_tflite(model, mode, io, calib)
        info = ModelInfo(
            labels=COLOURS, input=spec, quantization=name, architecture="tiny", params=model.count_params()
        )
        paths[name] = metadata.write_model(out / f"tiny_{name}.tflite", data, info)
    return paths


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory) -> dict[str, Path]:
    """Copies of the shipped .tflite models and their .json sidecars, as installed (edgeclf.edge_app.shipped):
    {stem: path}, "default" for edgeclf.edge_app.shipped.DEFAULT_MODEL. The models the `device` tests use: no Keras
    needed to make them.
    Copies, so that a test cannot change the files the package ships."""
    from edgeclf.edge_app import metadata, shipped

    if not shipped.DEFAULT_MODEL.is_file():  # they are package data: missing is a broken install, not a skip
        pytest.fail(f"no shipped default model at {shipped.DEFAULT_MODEL}")
    out = tmp_path_factory.mktemp("shipped")
    models = {}
    for model in sorted(shipped.MODELS_DIR.glob("*.tflite")):
        models[model.stem] = Path(shutil.copy2(model, out / model.name))
        sidecar = metadata.sidecar_path(model)
        if sidecar.is_file():
            shutil.copy2(sidecar, metadata.sidecar_path(models[model.stem]))
    models["default"] = models[shipped.DEFAULT_MODEL.stem]
    return models


@pytest.fixture()
def colour_folder(tmp_path):
    return write_image_folder(tmp_path / "colours")


@pytest.fixture()
def foreign_model(tmp_path):
    """A shipped model with its embedded metadata cut off and no sidecar (a third-party model, to edgeclf),
    and its labels file: (model path, labels path)."""
    from edgeclf.edge_app import metadata

    shipped = ROOT / "models" / "airbench_tiny_int8.tflite"
    if not shipped.is_file():
        pytest.skip("no shipped model")
    foreign = tmp_path / "thirdparty.tflite"
    foreign.write_bytes(metadata.strip_embedded(shipped.read_bytes()))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(metadata.load_info(shipped).labels) + "\n")
    return foreign, labels
