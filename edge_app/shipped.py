"""Where the shipped models and samples are: beside the code in a wheel, at the top of a checkout.

A wheel installs the repository's models/ folder as package data at edgeclf/edge_app/models/; an
editable install or a plain checkout reads the models/ folder next to edge_app/.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_PLACES = (_HERE / "models", _HERE.parent / "models")  # wheel, checkout

MODELS_DIR = next((place for place in _PLACES if place.is_dir()), _PLACES[-1])
SAMPLES_DIR = MODELS_DIR / "samples"
DEFAULT_MODEL = MODELS_DIR / "airbench_whiten_int8.tflite"
