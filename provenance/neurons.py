"""Neuron correspondence between one MLP layer of each of two checkpoints, from their weights.

Each neuron is described by its gate row and up row (the layer's MLP norm weight folded into their columns)
and its down column, compared by cosine in the two models' shared residual coordinates: the gate enters
signed, up and down by the absolute value of their summed cosines (they may flip sign together). A model
whose residual stream was rotated or permuted has other coordinates: its neurons match poorly here, and the
lineage body signal (which fits the map first) is the test for it.

A dense layer against a dense layer gives one permutation (the narrower side's neurons into the wider's); a
mixture-of-experts layer against a dense one gives one assignment per expert (and the shared expert) into
the dense neurons, many-to-one, as upcycling makes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import kernels
from .arch import ModelView
from .degenerate import usable
from .errors import MalformedInput, Unsupported
from .kernels.matching import Assignment, match_parts

# (group kind, gate role, up role, down role): the neuron groups an MLP layer may hold, in report order
GROUP_ROLES = (("dense", "mlp.gate", "mlp.up", "mlp.down"),
               ("expert", "moe.expert.gate", "moe.expert.up", "moe.expert.down"),
               ("shared", "moe.shared.gate", "moe.shared.up", "moe.shared.down"))


@dataclass
class Group:
    """One group of a layer's neurons, as descriptor parts (unit rows) ready for part_similarity."""

    name: str
    parts: tuple
    width: int


def _tensor(view: ModelView, role: str, layer: int, expert: int | None) -> torch.Tensor | None:
    t = view.get(role, layer, expert)
    if t is None:
        return None
    name = view.name_of(role, layer, expert) or role
    t = usable(t, name, role, view.source.root).float()
    if t.numel() == 0 or not torch.isfinite(t).all():
        raise MalformedInput(f"tensor {name!r} is empty or contains NaN or Inf", view.source.root)
    return t


def layer_groups(view: ModelView, layer: int, backend) -> list[Group]:
    """The neuron groups of one layer (dense FFN; or each routed expert, then the shared expert), placed on the
    backend as descriptor parts.

    Args:
        view: an opened model.
        layer: the layer index.
        backend: where the descriptors go (backends.get_backend(...)).
    Returns:
        The groups; empty when the layer has no MLP that acts on the hidden size.
    """
    if not 0 <= layer < view.num_layers:
        raise Unsupported(f"layer {layer} is out of range (the model has {view.num_layers} layers)", view.source.root)
    gamma = _tensor(view, "norm.mlp", layer, None)
    groups = []
    for kind, gate_role, up_role, down_role in GROUP_ROLES:
        experts = view.experts(layer) if kind == "expert" else [None]
        for e in experts:
            up, down = _tensor(view, up_role, layer, e), _tensor(view, down_role, layer, e)
            if up is None or down is None or down.shape != up.shape[::-1]:
                continue
            gate = _tensor(view, gate_role, layer, e)
            if gate is not None and gate.shape != up.shape:
                raise MalformedInput(f"layer {layer}: {gate_role} and {up_role} shapes differ", view.source.root)
            unit = lambda t: backend.place(kernels.unit_rows(t))  # noqa: E731
            up_f = unit(kernels.fold_columns(up, gamma))
            if gate is None:  # one nonlinearity on up: no sign freedom
                parts = ([up_f, unit(down.T)], [])
            else:             # SwiGLU: the gate's sign is fixed, up and down flip sign together
                parts = ([unit(kernels.fold_columns(gate, gamma))], [up_f, unit(down.T)])
            groups.append(Group(kind if e is None else f"expert {e}", parts, up.shape[0]))
    return groups


def _hidden(group: Group) -> int:
    return group.parts[0][0].shape[1]


def match_layers(view_a: ModelView, view_b: ModelView, layer_a: int, layer_b: int, backend, *,
                 progress=None, **options) -> dict:
    """Match one layer's neurons of A against one layer's of B.

    Args:
        view_a, view_b: opened models.
        layer_a, layer_b: layer indices.
        backend: where the similarity runs.
        progress: a provenance.progress.Progress with one step per assignment, or None.
        options: for kernels.matching.match_slabs (k, exact_below, ...).
    Returns:
        {"mode", "matches": [{group, rows_side, assignment}], "a": {...}, "b": {...}} where each assignment is a
        kernels.matching.Assignment of rows (on rows_side) into the other side's neurons.
    """
    ga, gb = layer_groups(view_a, layer_a, backend), layer_groups(view_b, layer_b, backend)
    for g, view, layer in ((ga, view_a, layer_a), (gb, view_b, layer_b)):
        if not g:
            raise Unsupported(f"layer {layer} has no MLP neurons this tool can read", view.source.root)
    if _hidden(ga[0]) != _hidden(gb[0]):
        raise Unsupported(f"hidden sizes differ ({_hidden(ga[0])} vs {_hidden(gb[0])}): the neurons live in different "
                          "spaces; use `provenance compare` for a lineage verdict", view_b.source.root)
    dense_a, dense_b = ga[0].name == "dense", gb[0].name == "dense"
    if dense_a and dense_b:
        a, b = ga[0], gb[0]
        rows_side = "a" if a.width <= b.width else "b"
        plan = [(a.name, rows_side, a.parts, b.parts) if rows_side == "a" else (b.name, rows_side, b.parts, a.parts)]
        mode = "dense-dense"
    elif dense_a != dense_b:
        dense, moe, moe_side = (ga[0], gb, "b") if dense_a else (gb[0], ga, "a")
        for g in moe:
            if g.width > dense.width:
                raise Unsupported(f"{g.name} has more neurons ({g.width}) than the dense layer ({dense.width})",
                                  (view_b if moe_side == "b" else view_a).source.root)
        plan = [(g.name, moe_side, g.parts, dense.parts) for g in moe]
        mode = "experts-dense"
    else:
        raise Unsupported("both layers are mixture-of-experts: match each against a dense layer instead",
                          view_b.source.root)
    matches = []
    for name, side, rows, cols in plan:
        if progress is not None:
            progress.step(name)
        matches.append({"group": name, "rows_side": side, "assignment": match_parts(rows, cols, **options)})
    describe = lambda gs, layer: {"layer": layer, "groups": [{"name": g.name, "neurons": g.width} for g in gs]}  # noqa: E731
    return {"mode": mode, "matches": matches, "a": describe(ga, layer_a), "b": describe(gb, layer_b)}


def assignment_record(assignment: Assignment) -> dict:
    """An assignment as the match_neurons document stores it."""
    return {**assignment.summary(), "rows": len(assignment.rows),
            "mean_similarity": float(assignment.similarity.mean()) if len(assignment.rows) else None,
            "permutation": [int(c) for c in assignment.cols],
            "similarity": [round(float(s), 6) for s in assignment.similarity]}
