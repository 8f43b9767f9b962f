"""ONNX exports of transformers: weights named through the graph, back in (out, in) layout.

Exporters rename MatMul weights (`onnx::MatMul_123`, `val_49`) and store them as
[in, out]; the bias of the Add that follows keeps its module name, so the weight is
named after it. Int8 exports store weights as Cast(q) * scale or DequantizeLinear;
those are dequantized here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import limits
from ..errors import MalformedInput, Unsupported
from .base import TensorInfo, TensorSource, confined

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


@dataclass
class _Weight:
    """How to build one exposed tensor from initializers."""
    source: str                 # initializer holding the (possibly quantized) values
    scale: str | None = None
    zero_point: str | None = None
    transpose: bool = False
    dtype: str = "float32"


class ONNXSource(TensorSource):
    format = "onnx"

    def __init__(self, root: Path, path: Path):
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise Unsupported("reading ONNX needs the onnx package: pip install 'provenance-verifier[onnx]'", path) from None
        self._numpy_helper = numpy_helper
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise MalformedInput(f"not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})", path) from None
        self._base = path.parent
        limits.check("onnx_nodes", len(model.graph.node), path, "nodes in the ONNX graph")
        limits.check("tensors", len(model.graph.initializer), path, "initializers in the ONNX graph")
        _require_text_names(model.graph, path)
        _require_single_assignment(model.graph, path)
        files = [path]
        self._init = {}
        for t in model.graph.initializer:
            if t.name in self._init:
                raise MalformedInput(f"initializer {t.name!r} appears twice", path)
            for entry in t.external_data:
                if entry.key == "location":
                    files.append(confined(self._base, entry.value, what="external data"))
            self._init[t.name] = t
        super().__init__(root, sorted(set(files)), None)
        self.metadata = {"producer": model.producer_name, "opset": [o.version for o in model.opset_import]}
        self._weights = self._name_weights(model.graph)
        self._infos = {name: TensorInfo(name, self._shape(w), w.dtype, path.name) for name, w in self._weights.items()}

    def _shape(self, w: _Weight) -> tuple[int, ...]:
        dims = tuple(int(d) for d in self._init[w.source].dims)
        return tuple(reversed(dims)) if w.transpose else dims

    def _name_weights(self, graph) -> dict[str, _Weight]:
        consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        virtual: dict[str, _Weight] = {}   # graph value name -> weight expression
        hidden: set[str] = set()           # initializers folded into a virtual weight
        for node in graph.node:
            ins = list(node.input)
            if node.op_type == "DequantizeLinear" and ins and ins[0] in self._init and len(ins) >= 2 and ins[1] in self._init:
                virtual[node.output[0]] = _Weight(ins[0], ins[1], ins[2] if len(ins) > 2 and ins[2] else None,
                                                  dtype=_type_name(self._init[ins[0]].data_type))
                hidden.update(i for i in ins if i)
            elif node.op_type == "Cast" and ins and ins[0] in self._init and _type_name(self._init[ins[0]].data_type) in ("int8", "uint8"):
                for mul in consumers.get(node.output[0], []):
                    other = [i for i in mul.input if i != node.output[0]]
                    if mul.op_type == "Mul" and len(other) == 1 and other[0] in self._init:
                        virtual[mul.output[0]] = _Weight(ins[0], other[0], dtype=_type_name(self._init[ins[0]].data_type))
                        hidden.update((ins[0], other[0]))
        weights: dict[str, _Weight] = {}
        for name, t in self._init.items():
            if name not in hidden:
                weights[name] = _Weight(name, dtype=_type_name(t.data_type))
        weights.update(virtual)
        renamed: dict[str, _Weight] = {}
        for node in graph.node:
            if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
                continue
            wname = node.input[1]
            if wname not in weights:
                continue
            transposed = not (node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute))
            bias = _bias_name(node, consumers, self._init)
            new_name = bias[: -len("bias")] + "weight" if bias and bias.endswith("bias") else wname
            w = weights.pop(wname)
            w.transpose = transposed
            renamed[new_name if new_name not in weights and new_name not in renamed else wname] = w
        weights.update(renamed)
        return weights

    def infos(self) -> dict[str, TensorInfo]:
        return self._infos

    def _array(self, name: str) -> np.ndarray:
        try:
            return self._numpy_helper.to_array(self._init[name], base_dir=str(self._base))
        except Exception as exc:
            raise MalformedInput(f"cannot read initializer {name!r} ({type(exc).__name__}: {str(exc)[:200]})", self.files[0]) from None

    def _load(self, name: str) -> torch.Tensor:
        w = self._weights[name]
        values = self._array(w.source)
        if w.scale is not None:
            values = values.astype(np.float32)
            if w.zero_point is not None:
                values = values - self._array(w.zero_point).astype(np.float32)
            values = values * self._array(w.scale).astype(np.float32)
        elif values.dtype.kind not in "f":
            values = values.astype(np.float64 if values.dtype.itemsize > 4 else np.float32)
        tensor = torch.from_numpy(np.array(values, copy=True, order="C"))
        return tensor.T.contiguous() if w.transpose and tensor.dim() == 2 else tensor


def _require_text_names(graph, path: Path) -> None:
    """protobuf hands back bytes for strings that are not UTF-8; such a graph is corrupt."""
    names = [t.name for t in graph.initializer]
    for node in graph.node:
        names += list(node.input) + list(node.output) + [node.op_type]
    for t in graph.initializer:
        names += [e.key for e in t.external_data] + [e.value for e in t.external_data]
    if any(not isinstance(n, str) for n in names):
        raise MalformedInput("graph holds a name that is not valid UTF-8", path)


def _require_single_assignment(graph, path: Path) -> None:
    """ONNX graphs assign each value once; a name produced twice (thousands of MatMuls writing one output)
    is malformed, and would make the bias lookup quadratic."""
    produced = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    for node in graph.node:
        if not node.output or not node.output[0]:
            raise MalformedInput(f"{node.op_type or 'a'} node produces no value", path)
        for name in node.output:
            if not name:
                continue
            if name in produced:
                raise MalformedInput(f"value {name!r} is produced twice in the graph", path)
            produced.add(name)


def _type_name(data_type: int) -> str:
    import onnx
    try:
        return FLOAT_TYPES.get(data_type) or onnx.helper.tensor_dtype_to_np_dtype(data_type).name
    except Exception:
        return f"onnx_type_{data_type}"


def _bias_name(matmul, consumers, initializers) -> str | None:
    """The named bias initializer of the Add that consumes this MatMul's output, if any."""
    if matmul.op_type == "Gemm" and len(matmul.input) > 2 and matmul.input[2] in initializers:
        return matmul.input[2]
    for add in consumers.get(matmul.output[0], []):
        if add.op_type == "Add":
            for name in add.input:
                if name != matmul.output[0] and name in initializers:
                    return name
    return None


def open_onnx(path: Path, root: Path, config: dict | None) -> ONNXSource:
    if path.is_dir():
        files = sorted(path.glob("*.onnx"))
        if len(files) != 1:
            raise Unsupported(f"directory holds {len(files)} .onnx files; name one", path)
        path = files[0]
    return ONNXSource(root, path)
