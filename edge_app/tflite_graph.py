"""Read and rewrite a .tflite flatbuffer: find the classifier head and expose the tensor that feeds it.

`teach` needs the embedding (the input of the last FULLY_CONNECTED, or of a 1x1 CONV_2D as TF-slim
MobileNets end) as a model output. The subgraph's output list is rewritten with the flatbuffer schema
that ai-edge-litert ships (`schema_py_generated`); the ops are untouched, so invoke time and memory stay
those of the base model. `experimental_preserve_all_tensors` is not used: it is a debugging switch that
keeps every intermediate and is not honoured inside delegate partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeclf.edge_app.errors import ModelLoadError, TeachError

# ops allowed between the head and the model's output: activation, shape, (de)quantisation, the logit
# scale some heads apply, and the average over test-time views that our models run inside the graph
PASS_THROUGH = ("SOFTMAX", "RESHAPE", "SQUEEZE", "QUANTIZE", "DEQUANTIZE", "MUL", "MEAN", "SUM")
HEAD_OPS = ("FULLY_CONNECTED", "CONV_2D")
# TensorType -> numpy dtype, for the constant tensors read here
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise TeachError("reading a model's graph needs ai-edge-litert: pip install 'edgeclf[edge]'") from None
    return schema_py_generated


@dataclass(frozen=True)
class HeadSite:
    """Where the classifier head sits: the embedding tensor, the head's logits, and its weights.

    `weights` (classes, dim) and `bias` (classes,) are the head's float values times `scale`, the product
    of the scalar MULs between the head and the softmax, so they produce the model's own logits."""

    embedding: int
    logits: int
    op: str
    dim: int
    weights: np.ndarray
    bias: np.ndarray
    scale: float


def load(data: bytes) -> Any:
    """The flatbuffer as the schema's mutable object tree (ModelT)."""
    schema = _schema()
    try:
        if not schema.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError("no TFL3 identifier")
        return schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer raises anything while being walked
        raise ModelLoadError(f"not a .tflite flatbuffer ({type(exc).__name__}: {exc})") from None


def pack(model: Any) -> bytes:
    """Serialise a ModelT back into .tflite bytes."""
    import flatbuffers  # a dependency of ai-edge-litert

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_names(model: Any) -> list[str]:
    names = {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM") for code in model.operatorCodes]


def _producers(graph: Any) -> dict[int, Any]:
    return {int(out): op for op in graph.operators or [] for out in op.outputs}


def constant(model: Any, graph: Any, index: int) -> np.ndarray | None:
    """A constant tensor's float values (dequantised; a float16 weight behind a DEQUANTIZE op is followed), or
    None when the tensor is computed at run time."""
    tensor = graph.tensors[index]
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if data is None or len(data) == 0:
        producer = _producers(graph).get(index)
        if producer is not None and _op_names(model)[producer.opcodeIndex] == "DEQUANTIZE":
            return constant(model, graph, int(producer.inputs[0]))
        return None
    dtype = _DTYPES.get(tensor.type)
    if dtype is None:
        raise TeachError(f"tensor {tensor.name!r} has an unsupported type {tensor.type}")
    values = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype).astype(np.float64)
    shape = [int(d) for d in tensor.shape] if tensor.shape is not None else [values.size]
    values = values.reshape(shape) if shape else values.reshape(())
    quant = tensor.quantization
    if np.issubdtype(dtype, np.integer) and quant is not None and quant.scale is not None and len(quant.scale):
        scale = np.asarray(quant.scale, dtype=np.float64)
        zero = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else [0], dtype=np.float64)
        if scale.size > 1:  # per-channel along quantizedDimension
            axis_shape = [1] * values.ndim
            axis_shape[quant.quantizedDimension] = scale.size
            scale, zero = scale.reshape(axis_shape), zero.reshape(axis_shape)
        values = (values - zero) * scale
    return values


def find_head(model: Any) -> HeadSite:
    """Walk back from the first subgraph's output to the classifier head; TeachError saying why if there is
    none this code can use."""
    graph = model.subgraphs[0]
    names = _op_names(model)
    producers = _producers(graph)
    if len(graph.outputs) != 1:
        raise TeachError(f"the model has {len(graph.outputs)} outputs; teach needs a classifier with one")
    tensor, path = int(graph.outputs[0]), []
    muls: list[tuple[np.ndarray, bool]] = []  # each MUL's constant, and whether a SOFTMAX lay between it and the output
    seen_softmax = False
    while True:
        op = producers.get(tensor)
        if op is None:
            raise TeachError(f"no FULLY_CONNECTED or 1x1 CONV_2D feeds the output (walked back over {_path(path)})")
        name = names[op.opcodeIndex]
        path.append(name)
        if name in HEAD_OPS:
            break
        if name not in PASS_THROUGH:
            raise TeachError(
                f"the output is computed by {name} after the last layer (walked back over {_path(path)}); "
                f"teach needs the classifier layer followed only by {', '.join(PASS_THROUGH)}"
            )
        inputs = [int(i) for i in op.inputs if int(i) >= 0]
        seen_softmax = seen_softmax or name == "SOFTMAX"
        if name == "MUL":
            consts = [(i, constant(model, graph, i)) for i in inputs]
            variable = [i for i, c in consts if c is None]
            if len(variable) != 1:
                raise TeachError("a MUL of two computed tensors follows the classifier layer")
            muls += [(c, seen_softmax) for _, c in consts if c is not None]
            tensor = variable[0]
        else:
            tensor = inputs[0]
    # a MUL between the layer and the softmax scales the logits (it must be one number to keep the head
    # linear); one after the softmax weights the test-time views' probabilities and is not the head's
    scale = 1.0
    for value, before_softmax in muls:
        if before_softmax or not seen_softmax:
            if value.size != 1:
                raise TeachError("the classifier's logits are multiplied by a non-scalar constant")
            scale *= float(value.reshape(-1)[0])
    return _head_site(model, graph, op, name, scale)


def _path(path: list[str]) -> str:
    return " <- ".join(path) if path else "nothing"


def _head_site(model: Any, graph: Any, op: Any, name: str, scale: float) -> HeadSite:
    embedding, weight_index = int(op.inputs[0]), int(op.inputs[1])
    bias_index = int(op.inputs[2]) if len(op.inputs) > 2 else -1
    weights = constant(model, graph, weight_index)
    if weights is None:
        raise TeachError(f"the last {name}'s weights are computed at run time, not stored in the file")
    if name == "CONV_2D":
        # TF-slim heads: a 1x1 kernel over a 1x1 map is a dense layer; weights are (out, 1, 1, in)
        if weights.ndim != 4 or weights.shape[1:3] != (1, 1):
            raise TeachError(f"the last CONV_2D has a {weights.shape[1]}x{weights.shape[2]} kernel, not 1x1")
        in_shape = [int(d) for d in graph.tensors[embedding].shape]
        if len(in_shape) == 4 and in_shape[1:3] != [1, 1]:
            raise TeachError(f"the last CONV_2D sees a {in_shape[1]}x{in_shape[2]} map, not a 1x1 embedding")
        weights = weights.reshape(weights.shape[0], weights.shape[3])
    if weights.ndim != 2:
        raise TeachError(f"the last {name}'s weights have shape {list(weights.shape)}")
    bias = constant(model, graph, bias_index) if bias_index >= 0 else None
    bias = np.zeros(weights.shape[0]) if bias is None else bias.reshape(-1)
    return HeadSite(
        embedding=embedding,
        logits=int(op.outputs[0]),
        op=name,
        dim=int(weights.shape[1]),
        weights=(weights * scale).astype(np.float32),
        bias=(bias * scale).astype(np.float32),
        scale=scale,
    )


def expose(model: Any, tensors: list[int], names: list[str]) -> bytes:
    """The model with its first subgraph's outputs replaced by `tensors` (and its signatures renamed to
    `names`), packed back to bytes."""
    graph = model.subgraphs[0]
    graph.outputs = np.asarray(tensors, dtype=np.int32)
    schema = _schema()
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex != 0:
            continue
        outputs = []
        for index, name in zip(tensors, names):
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = name, index
            outputs.append(entry)
        signature.outputs = outputs
    return pack(model)

