"""A TFLite image classifier that honours the model contract.

Input scale / zero point are read from the interpreter, never assumed; outputs are
dequantised and turned into probabilities when they are not already a distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import metadata, preprocess
from edgeclf.edge_app.contract import InputSpec, ModelInfo
from edgeclf.edge_app.errors import MetadataError, ModelLoadError
from edgeclf.edge_app.head import BACKGROUNDS, background_index
from edgeclf.edge_app.labels import read_labels
from edgeclf.edge_app.runtime import load_interpreter

# Convention for foreign models without metadata: maps 0..255 to [-1, 1], which a uint8 model
# with scale 1/127.5 and zero point 128 receives as the raw pixel bytes.
FOREIGN_MEAN = (127.5, 127.5, 127.5)
FOREIGN_STD = (127.5, 127.5, 127.5)
BACKGROUND = BACKGROUNDS[0]
FOREIGN = "foreign"  # architecture name given to models without edgeclf metadata


@dataclass(frozen=True)
class TensorQuant:
    """dtype, scale and zero point of one tensor, as the interpreter reports them."""

    dtype: Any
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return np.issubdtype(self.dtype, np.integer) and self.scale != 0


def _tensor_quant(detail: dict[str, Any]) -> TensorQuant:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(detail["dtype"], np.integer) and not scale:
        scale, zero_point = 1.0, 0  # an integer tensor without parameters holds the values themselves
    return TensorQuant(detail["dtype"], float(scale), int(zero_point))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores that already form a distribution (within int8 rounding) are kept; others go through softmax."""
    sums = scores.sum(axis=-1)
    if scores.min() >= 0 and np.allclose(sums, 1.0, atol=0.05):
        return scores
    return softmax(scores)


def foreign_info(interpreter: Any, labels: tuple[str, ...], path: Path) -> ModelInfo:
    """The contract of a model without edgeclf metadata: its input size, the normalisation convention for such
    models, and `labels`, with a background class first when it has one output more than labels (the 1001-output
    ImageNet models with a 1000-line labels file)."""
    shape = interpreter.get_input_details()[0]["shape"]
    if len(shape) != 4 or int(shape[3]) != 3:
        raise MetadataError(f"{path}: input tensor {list(shape)} is not an NHWC RGB image")
    q_in = _tensor_quant(interpreter.get_input_details()[0])
    quant = "int8" if q_in.quantized else "float32"
    if q_in.quantized and q_in.scale == 1.0 and q_in.zero_point == 0:
        spec = InputSpec(int(shape[1]), int(shape[2]), mean=(0.0,) * 3, std=(1.0,) * 3)  # raw pixel bytes
    else:
        spec = InputSpec(int(shape[1]), int(shape[2]), mean=FOREIGN_MEAN, std=FOREIGN_STD)
    if len(labels) == int(interpreter.get_output_details()[0]["shape"][-1]) - 1:
        labels = (BACKGROUND, *labels)
    return ModelInfo(labels=labels, input=spec, quantization=quant, architecture=FOREIGN)


class Classifier:
    """Load a .tflite classifier with its contract and predict class probabilities."""

    def __init__(
        self,
        model_path: str | Path,
        labels_file: str | Path | None = None,
        runtime: str | None = None,
        threads: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        content: bytes | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        """`content` (the flatbuffer's bytes) and `info` (its contract) let teach run a model it has not
        written yet; `model_path` then only names it in messages."""
        self.path = Path(model_path)
        self.interpreter, self.runtime = load_interpreter(self.path, runtime, threads, content)
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()
        self._output = self._outputs[0]
        self.input_quant = _tensor_quant(self._input)
        self.output_quants = [_tensor_quant(detail) for detail in self._outputs]
        self.output_quant = self.output_quants[0]
        info = self._resolve_info(labels_file) if info is None else self._check_shape(info)
        if mean is not None or std is not None:
            spec = info.input
            info = info.with_changes(input=replace(spec, mean=mean or spec.mean, std=std or spec.std))
        n_out = int(self._output["shape"][-1])
        self.info = info
        if info.head is not None:
            wanted = 2 if info.head.mode == "extend" else 1  # the embedding, then the base logits
            if len(self._outputs) < wanted:
                raise MetadataError(
                    f"{self.path}: the taught head ({info.head.mode}) needs {wanted} model output(s), "
                    f"the file has {len(self._outputs)}"
                )
        elif content is None and len(self.info.labels) != n_out:
            raise MetadataError(f"{self.path}: {len(self.info.labels)} labels but the model outputs {n_out} scores")
        self._batch = 1

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def spec(self) -> InputSpec:
        return self.info.input

    def _resolve_info(self, labels_file: str | Path | None) -> ModelInfo:
        if labels_file is None:
            info = metadata.load_info(self.path)
        else:
            labels = read_labels(labels_file)
            try:
                info = metadata.load_info(self.path).with_changes(labels=labels)
            except MetadataError:
                info = foreign_info(self.interpreter, labels, self.path)
        return self._check_shape(info)

    def _check_shape(self, info: ModelInfo) -> ModelInfo:
        shape = self._input["shape"]
        if len(shape) != 4 or int(shape[3]) != 3:
            raise MetadataError(f"{self.path}: input tensor {list(shape)} is not an NHWC 3-channel image")
        if (int(shape[1]), int(shape[2])) != (info.input.height, info.input.width):
            raise MetadataError(
                f"{self.path}: metadata says input {info.input.height}x{info.input.width} "
                f"but the model's input tensor is {list(shape)}"
            )
        return info

    def _set_batch(self, n: int) -> None:
        if n == self._batch:
            return
        shape = [n, *[int(d) for d in self._input["shape"][1:]]]
        self.interpreter.resize_tensor_input(self._input["index"], shape)
        self.interpreter.allocate_tensors()
        self._batch = n

    def _batchable(self) -> bool:
        signature = self._input.get("shape_signature")
        return signature is not None and len(signature) > 0 and int(signature[0]) == -1

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Normalised float32 inputs (N, H, W, 3) -> probabilities (N, classes)."""
        head = self.info.head
        outputs = self.outputs(x, batch_size, per_view=head is not None)
        if head is not None:
            return head.probabilities(outputs[0], outputs[1] if len(outputs) > 1 else None)
        return as_probabilities(outputs[0])

    def outputs(self, x: np.ndarray, batch_size: int = 64, per_view: bool = False) -> list[np.ndarray]:
        """Normalised float32 inputs (N, H, W, 3) -> every model output, dequantised; with `per_view` each is
        (N, views, values), the in-graph test-time views apart (a taught model's embedding and base logits)."""
        if x.ndim == 3:
            x = x[None]
        step = batch_size if self._batchable() else 1
        chunks: list[list[np.ndarray]] = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            self._set_batch(len(chunk))
            self._invoke(chunk)
            chunks.append([self._read(d, q, len(chunk), per_view) for d, q in zip(self._outputs, self.output_quants)])
        return [np.concatenate(parts, axis=0) for parts in zip(*chunks)]

    def _read(self, detail: dict[str, Any], q: TensorQuant, n: int, per_view: bool) -> np.ndarray:
        raw = self.interpreter.get_tensor(detail["index"])
        values = preprocess.dequantize(raw, q.scale, q.zero_point) if q.quantized else raw.astype(np.float32)
        if not per_view:
            return values
        # the views are stacked view by view on the batch axis: (views * n, ...) -> (n, views, values)
        return np.swapaxes(values.reshape(len(raw) // n, n, -1), 0, 1)

    def _invoke(self, chunk: np.ndarray) -> None:
        q_in = self.input_quant
        if q_in.quantized:
            tensor = preprocess.quantize(chunk, q_in.scale, q_in.zero_point, q_in.dtype)
        else:
            tensor = chunk.astype(q_in.dtype, copy=False)
        try:
            self.interpreter.set_tensor(self._input["index"], tensor)
            self.interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.path}: inference failed: {str(exc).strip().splitlines()[0]}") from None

    @property
    def background(self) -> int | None:
        """Index of a background class (never reported as a prediction), if the labels have one."""
        return background_index(self.labels)

    def top_k(self, probs: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs of one probability vector, background skipped."""
        # stable: on a tie (common in a quantised output) the lower index wins, as with argmax
        order = [i for i in np.argsort(-probs, kind="stable") if i != self.background][: max(1, k)]
        return [(self.labels[i], float(probs[i])) for i in order]

    def classify(self, image: np.ndarray, color: str = "BGR", top_k: int = 5) -> list[tuple[str, float]]:
        """One uint8 image in `color` order -> the top-k (label, probability) pairs."""
        return self.top_k(self.predict(preprocess.prepare(image, self.spec, color))[0], top_k)
