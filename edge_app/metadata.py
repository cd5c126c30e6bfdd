"""Read and write the model contract: a JSON sidecar and the same JSON embedded in the .tflite.

The JSON is embedded as a zip archive appended to the flatbuffer (the way TFLite's own
metadata tools pack associated files): interpreters ignore the trailing bytes, and
`zipfile` finds the archive from the end of the file.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from edgeclf.edge_app import files
from edgeclf.edge_app.contract import ModelInfo
from edgeclf.edge_app.errors import MetadataError

MEMBER = "edgeclf.json"


def sidecar_path(model_path: str | Path) -> Path:
    """`models/x.tflite` -> `models/x.json`."""
    return Path(model_path).with_suffix(".json")


def strip_embedded(data: bytes) -> bytes:
    """The flatbuffer alone: drop an appended metadata archive if there is one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            start = min(info.header_offset for info in zf.infolist()) if zf.infolist() else len(data)
    except zipfile.BadZipFile:
        return data
    return data[:start]


def embed(model_bytes: bytes, info: ModelInfo) -> bytes:
    """Return the model bytes with `info` embedded (replacing any earlier metadata)."""
    buf = io.BytesIO(strip_embedded(model_bytes))
    buf.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buf, mode="a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MEMBER, json.dumps(info.to_dict(), indent=2))
    return buf.getvalue()


def read_embedded(model_path: str | Path) -> ModelInfo | None:
    """The embedded contract, None when the file carries none, MetadataError when it is malformed."""
    path = Path(model_path)
    try:
        with zipfile.ZipFile(path) as zf:
            if MEMBER not in zf.namelist():
                return None
            raw = zf.read(MEMBER)
    except zipfile.BadZipFile:
        return None
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _parse(raw, f"metadata embedded in {path}")


def read_sidecar(model_path: str | Path) -> ModelInfo | None:
    """The sidecar contract next to the model, None when absent."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _parse(raw, str(path))


def write_model(model_path: str | Path, model_bytes: bytes, info: ModelInfo) -> Path:
    """Write the .tflite with embedded metadata and its sidecar, both atomically."""
    path = Path(model_path)
    files.write_bytes(path, embed(model_bytes, info))
    files.write_json(sidecar_path(path), info.to_dict())
    return path


def load_info(model_path: str | Path) -> ModelInfo:
    """Embedded metadata first, then the sidecar; a clear error naming the fallback otherwise."""
    path = Path(model_path)
    problems = []
    for reader in (read_embedded, read_sidecar):
        try:
            info = reader(path)
        except MetadataError as exc:
            problems.append(str(exc))
            continue
        if info is not None:
            return info
    detail = "; ".join(problems) if problems else f"no embedded metadata and no sidecar {sidecar_path(path).name}"
    raise MetadataError(f"{path}: {detail} (pass --labels FILE to use it anyway)")


def _parse(raw: bytes, where: str) -> ModelInfo:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{where} is not valid JSON: {exc}") from None
    try:
        return ModelInfo.from_dict(data)
    except MetadataError as exc:
        raise MetadataError(f"{where}: {exc}") from None
