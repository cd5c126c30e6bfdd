"""User-facing errors: each carries a one-line message the CLI prints without a traceback."""


class EdgeClfError(Exception):
    """An error caused by the user's input or environment, reported in one line (exit 1)."""


class MetadataError(EdgeClfError):
    """Model metadata is missing, malformed or does not match the model."""


class ModelLoadError(EdgeClfError):
    """A model file cannot be loaded by the chosen runtime."""


class DataError(EdgeClfError):
    """A dataset is missing, empty or does not match what the model expects."""


class MissingDependencyError(EdgeClfError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


def require(module: str, extra: str) -> object:
    """Import `module` or raise MissingDependencyError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{module} is not installed: pip install 'edgeclf[{extra}]' ({exc})") from exc


class TeachError(EdgeClfError):
    """A model cannot be taught (no usable embedding) or the teaching data cannot be used."""
