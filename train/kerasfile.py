"""A Keras model file read with one clear line for whatever is wrong with it (`edgeclf convert`, `train --init`)."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, require
from edgeclf.train.report import RUN_FILE

try:
    from lzma import LZMAError
except ImportError:  # a Python built without liblzma: zipfile cannot inflate LZMA members either
    LZMAError = zlib.error

KERAS_SUFFIXES = (".keras", ".h5")
MAX_KERAS_CONFIG = 64 * 2**20  # a model's architecture JSON; far above any real one, below a zip bomb


def locate(path: str | Path, option: str = "") -> tuple[Path, Path | None]:
    """(the Keras file, the run.json beside it or None) for a run folder of `edgeclf train` or a Keras file;
    `option` (e.g. "--init") starts each message, for the command line that named the path."""
    path = Path(path)
    lead = f"{option} " if option else ""
    if path.is_dir():
        model = path / "model.keras"
        if not model.is_file():
            raise EdgeClfError(f"{lead}{path}: no model.keras in it, so not a run folder of `edgeclf train`")
    elif path.is_file():
        if path.suffix not in KERAS_SUFFIXES:
            raise EdgeClfError(f"{lead}{path} is not a Keras model (give a run folder, a .keras or a .h5 file)")
        model = path
    else:
        raise EdgeClfError(f"{lead}{path}: no such run folder or Keras file")
    run_file = model.parent / RUN_FILE
    return model, run_file if run_file.is_file() else None


def load_keras(path: Path) -> Any:
    """Load a Keras model, or a one-line error when the file is not a readable one."""
    check_archive(path)
    keras = require("keras", "train")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - corrupt zips, wrong formats, missing layers
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EdgeClfError(f"{path} is not a readable Keras model ({first})") from None


def check_archive(path: Path) -> None:
    """Name what is wrong with a .keras file before Keras does: it calls a non-zip 'File not found'."""
    if path.suffix != ".keras":
        return
    try:
        if not zipfile.is_zipfile(path):
            raise EdgeClfError(f"{path} is not a readable Keras model (not a zip archive, or a truncated one)")
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise EdgeClfError(f"{path} is not a readable Keras model (a zip archive with no config.json in it)")
            if archive.getinfo("config.json").file_size > MAX_KERAS_CONFIG:
                raise EdgeClfError(f"{path} is not a readable Keras model (its config.json is implausibly large)")
            json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, EOFError, zlib.error, LZMAError) as exc:  # the last two: damaged compressed data
        raise EdgeClfError(f"{path} is not a readable Keras model (damaged zip archive: {exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise EdgeClfError(f"{path} is not a readable Keras model (its config.json is not valid JSON)") from None
    except (NotImplementedError, RuntimeError) as exc:  # an unknown compression method; an encrypted member
        raise EdgeClfError(f"{path} is not a readable Keras model (config.json cannot be extracted: {exc})") from None
    except OSError as exc:
        raise EdgeClfError(f"{path} cannot be read: {exc.strerror or exc}") from None
