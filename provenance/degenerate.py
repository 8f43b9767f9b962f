"""Degenerate weights: inputs that would give a confident verdict from no signal, refused with a reason.

Checked where tensors enter the fingerprint, not in lineage: a role's tensor has the rank its role
needs (a scalar, a vector or a 3-D block where a matrix belongs is malformed), a storage dtype that
can be computed with (fp8 is upcast, never computed in), finite values of a magnitude trained weights
have, and variation (a constant matrix carries no lineage signal at all).
"""
from __future__ import annotations

import torch

from .errors import MalformedInput

# role prefix -> rank its tensor must have (first match wins); roles matching none are not checked
RANKS = (
    ("moe.experts.", 3),                                   # experts stacked in one tensor
    ("embed_norm", 1), ("attn.q_norm", 1), ("attn.k_norm", 1), ("attn.kv_a_norm", 1), ("attn.q_a_norm", 1), ("norm.", 1),
    ("attn.q.bias", 1), ("attn.k.bias", 1), ("attn.v.bias", 1), ("attn.qkv.bias", 1), ("attn.o.bias", 1),
    ("mlp.up.bias", 1), ("mlp.down.bias", 1),
    ("attn.", 2), ("mlp.", 2), ("moe.expert.", 2), ("moe.shared.", 2), ("embed", 2), ("lm_head", 2),
)
# far above trained weights (largest outliers are in the hundreds), far below float32 overflow in a product
MAX_ABS = 1e6
# a matrix whose entries all equal one value (to float32 resolution) has no signal
MIN_RELATIVE_SPREAD = 1e-7
FLOAT8 = {getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz") if hasattr(torch, n)}


def expected_rank(role: str) -> int | None:
    return next((rank for prefix, rank in RANKS if role.startswith(prefix)), None)


def check_shapes(view) -> None:
    """Every mapped tensor has the rank its role needs, and the layer count is within its limit, from headers
    alone (before any config check reads shapes or loops over layers). Args: view, a ModelView."""
    from . import limits
    limits.check("layers", view.num_layers, view.source.root, "layers named by the tensors")
    infos = view.source.infos()
    for name, ref in view.roles.items():
        rank = len(infos[name].shape)
        want = expected_rank(ref.role)
        if want is not None and rank != want:
            raise MalformedInput(f"tensor {name!r} ({ref.role}) has {rank} dimensions {infos[name].shape}; its role "
                                 f"needs {want}", view.source.root)
        if 0 in infos[name].shape:
            raise MalformedInput(f"tensor {name!r} is empty (shape {infos[name].shape})", view.source.root)


def usable(t: torch.Tensor, name: str, role: str, root) -> torch.Tensor:
    """The tensor as float32-computable values, or MalformedInput saying why it carries no usable signal.

    Args:
        t: the tensor as read.
        name: its name in the checkpoint.
        role: its role (attn.q, mlp.up, norm.attn, ...).
        root: the model, for the message.
    Returns:
        t, upcast from fp8 when stored so.
    """
    screen = Screen(name, role, root)
    t = screen.add(t)
    screen.finish()
    return t


class Screen:
    """The checks of `usable` over a tensor that arrives in parts (row blocks of an embedding too large to hold
    in float32 at once): `add` each part, then `finish`. Each part is checked block by block, so that checking
    holds no float32 copy of it."""

    def __init__(self, name: str, role: str, root):
        self.name, self.role, self.root = name, role, root
        self.lo = self.hi = self.first = None

    def add(self, t: torch.Tensor) -> torch.Tensor:
        """Check one part; returns it, upcast from fp8 when stored so."""
        if t.dtype in FLOAT8:
            t = t.to(torch.float32)
        if not (torch.is_floating_point(t) or t.dtype in (torch.int8, torch.uint8, torch.int16, torch.int32)):
            raise MalformedInput(f"tensor {self.name!r} has dtype {t.dtype}, not weights", self.root)
        if t.numel() == 0:
            raise MalformedInput(f"tensor {self.name!r} is empty", self.root)
        for block in _blocks(t):
            f = block.float() if block.dtype != torch.float64 else block
            if self.first is None:
                self.first = float(f.reshape(-1)[0])
            lo, hi = torch.aminmax(f)  # NaN propagates to both, an infinity to one: no separate isfinite pass
            if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
                raise MalformedInput(f"tensor {self.name!r} contains NaN or Inf", self.root)
            self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
            self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        return t

    def finish(self) -> None:
        """Refuse the whole tensor if its magnitude or spread says it carries no signal."""
        if self.lo is None:
            raise MalformedInput(f"tensor {self.name!r} is empty", self.root)
        if expected_rank(self.role) not in (2, 3):
            return
        lo, hi = float(self.lo), float(self.hi)
        peak = max(abs(lo), abs(hi))
        if peak > MAX_ABS:
            raise MalformedInput(f"tensor {self.name!r} has entries of magnitude {peak:.3g}, beyond any trained weight "
                                 f"(limit {MAX_ABS:g}): refused rather than compared", self.root)
        if hi - lo <= MIN_RELATIVE_SPREAD * max(peak, 1e-30):
            raise MalformedInput(f"tensor {self.name!r} is constant (every entry {self.first:.4g}): it carries "
                                 "no lineage signal; refused rather than compared", self.root)


CHECK_ELEMENTS = 1 << 22  # entries converted and checked at a time


def _blocks(t: torch.Tensor):
    """The tensor in blocks of about CHECK_ELEMENTS entries along its first dimension (views, no copy)."""
    if t.dim() <= 1:
        return t.reshape(-1).split(CHECK_ELEMENTS)
    per_row = max(1, t[0].numel())
    return t.split(max(1, CHECK_ELEMENTS // per_row), dim=0)
