"""Write a BERT-style ONNX graph the way torch's exporter lays it out: MatMul weights
renamed and stored [in, out], named biases on the Add that follows, optional int8
Cast*scale weights. Built with the onnx library itself, so the reader sees a real file."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def bert_onnx(path, layers: int = 2, hidden: int = 16, ffn: int = 32, vocab: int = 50, int8: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    truth = {}  # HF name -> (out, in) array the reader should return

    def init(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))

    emb = rng.normal(size=(vocab, hidden)).astype(np.float32)
    init("bert.embeddings.word_embeddings.weight", emb)
    truth["bert.embeddings.word_embeddings.weight"] = emb
    nodes.append(helper.make_node("Gather", ["bert.embeddings.word_embeddings.weight", "input_ids"], ["x0"]))
    x = "x0"
    counter = [100]

    def linear(x, module, out_dim, in_dim):
        w = rng.normal(size=(out_dim, in_dim)).astype(np.float32)
        counter[0] += 1
        wname = f"onnx::MatMul_{counter[0]}"
        if int8:
            scale = (np.abs(w.T).max(axis=0, keepdims=True) / 127).astype(np.float32)
            q = np.round(w.T / scale).clip(-127, 127).astype(np.int8)
            init(wname + "_q", q)
            init(wname + "_scale", scale)
            nodes.append(helper.make_node("Cast", [wname + "_q"], [wname + "_f"], to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Mul", [wname + "_f", wname + "_scale"], [wname]))
            w = (q.astype(np.float32) * scale).T
        else:
            init(wname, w.T.copy())
        bias = f"bert.encoder.{module}.bias"
        init(bias, rng.normal(size=(out_dim,)).astype(np.float32))
        nodes.append(helper.make_node("MatMul", [x, wname], [f"{module}_mm"]))
        nodes.append(helper.make_node("Add", [bias, f"{module}_mm"], [f"{module}_out"]))
        truth[f"bert.encoder.{module}.weight"] = w
        return f"{module}_out"

    for i in range(layers):
        q = linear(x, f"layer.{i}.attention.self.query", hidden, hidden)
        linear(x, f"layer.{i}.attention.self.key", hidden, hidden)
        linear(x, f"layer.{i}.attention.self.value", hidden, hidden)
        o = linear(q, f"layer.{i}.attention.output.dense", hidden, hidden)
        u = linear(o, f"layer.{i}.intermediate.dense", ffn, hidden)
        x = linear(u, f"layer.{i}.output.dense", hidden, ffn)
    graph = helper.make_graph(nodes, "bert", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4, hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return truth
