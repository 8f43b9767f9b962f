"""ModelView: a checkpoint seen through its family table, as canonical roles per layer."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ..degenerate import check_shapes
from ..errors import MalformedInput, Unsupported
from ..io.base import TensorSource
from .families import CONFIG_ALIASES, FAMILIES, FUSED, Family

_PREFIX = r"(?:.+\.)?"


@dataclass(frozen=True)
class RoleRef:
    role: str
    layer: int | None = None
    expert: int | None = None
    transposed: bool = False


def _compile(family: Family):
    compiled = []
    for pattern, target in family.rows.items():
        role, opts = (target, {}) if isinstance(target, str) else target
        regex = re.escape(pattern).replace(r"\{L\}", r"(?P<layer>\d+)").replace(r"\{E\}", r"(?P<expert>\d+)")
        compiled.append((re.compile(_PREFIX + regex), role, bool(opts.get("transposed"))))
    return compiled


_COMPILED = {f.name: _compile(f) for f in FAMILIES}


def map_names(family: Family, names) -> dict[str, RoleRef]:
    roles = {}
    for name in names:
        for regex, role, transposed in _COMPILED[family.name]:
            m = regex.fullmatch(name)
            if m:
                groups = m.groupdict()
                layer = int(groups["layer"]) if groups.get("layer") is not None else None
                expert = int(groups["expert"]) if groups.get("expert") is not None else None
                roles[name] = RoleRef(role, layer, expert, transposed)
                break
    return roles


def detect_family(names, config: dict) -> tuple[Family, dict[str, RoleRef]]:
    names = list(names)
    model_type = str(config.get("model_type", ""))
    for family in FAMILIES:
        if model_type and model_type in family.model_types:
            roles = map_names(family, names)
            if roles:
                return family, roles
    best = None
    for family in FAMILIES:
        roles = map_names(family, names)
        present = {r.role for r in roles.values()}
        if roles and all(m in present for m in family.markers):
            if best is None or len(roles) > len(best[1]):
                best = (family, roles)
    if best is None:
        raise Unsupported("no known model family matches these tensor names")
    return best


@dataclass
class ModelView:
    source: TensorSource
    family: Family
    roles: dict[str, RoleRef]
    unmapped: list[str] = field(default_factory=list)

    @classmethod
    def from_source(cls, source: TensorSource) -> "ModelView":
        infos = source.infos()
        family, roles = detect_family(infos.keys(), source.config)
        unmapped = sorted(n for n in infos if n not in roles)
        view = cls(source, family, roles, unmapped)
        check_shapes(view)  # a scalar or 3-D block where a matrix belongs: refused before shapes are read
        view.check_config()
        return view

    def close(self) -> None:
        """Release the source's open files and maps (the view is unusable afterwards)."""
        self.source.close()

    def __enter__(self) -> "ModelView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- lookup -------------------------------------------------------------
    @cached_property
    def _index(self) -> dict[tuple, str]:
        return {(r.role, r.layer, r.expert): name for name, r in self.roles.items()}

    def name_of(self, role: str, layer: int | None = None, expert: int | None = None) -> str | None:
        return self._index.get((role, layer, expert))

    def has(self, role: str, layer: int | None = None) -> bool:
        if (role, layer, None) in self._index:
            return True
        return any(role in parts and (fused, layer, None) in self._index for fused, parts in FUSED.items())

    def shape(self, role: str, layer: int | None = None, expert: int | None = None) -> tuple[int, ...] | None:
        name = self.name_of(role, layer, expert)
        if name is not None:
            shape = self.source.infos()[name].shape
            return tuple(reversed(shape)) if self.roles[name].transposed else shape
        stacked = self._stacked_name(role, layer, expert)
        if stacked is not None:
            return self.source.infos()[stacked].shape[1:]
        for fused, parts in FUSED.items():
            if role in parts and (fused, layer, None) in self._index:
                full = self.shape(fused, layer)
                return (self._split_sizes(fused, full[0])[parts.index(role)],) + tuple(full[1:])
        return None

    def _stacked_name(self, role: str, layer: int | None, expert: int | None) -> str | None:
        """The stacked [experts, out, in] tensor that holds an expert role, when the experts are stored so."""
        if expert is None or not role.startswith("moe.expert."):
            return None
        return self.name_of(role.replace("moe.expert.", "moe.experts."), layer)

    def stored_bytes(self, role: str, layer: int | None = None, expert: int | None = None) -> int:
        """Bytes of the checkpoint that `get(role, layer, expert)` reads (0 when the role is absent)."""
        name = self.name_of(role, layer, expert)
        if name is not None:
            return self.source.stored_bytes(name)
        stacked = self._stacked_name(role, layer, expert)
        if stacked is not None:
            return self.source.stored_bytes(stacked) // max(1, self.source.infos()[stacked].shape[0])
        for fused, parts in FUSED.items():
            if role in parts and (fused, layer, None) in self._index:
                return self.stored_bytes(fused, layer)
        return 0

    def get(self, role: str, layer: int | None = None, expert: int | None = None,
            float32: bool = False) -> torch.Tensor | None:
        """One role's tensor in (out, in) layout, splitting fused tensors and slicing stacked experts; with
        `float32`, narrower float storage widened as it is read (TensorSource.get)."""
        name = self.name_of(role, layer, expert)
        if name is not None:
            tensor = self.source.get(name, float32=float32) if float32 else self.source.get(name)
            return tensor.T if self.roles[name].transposed and tensor.dim() == 2 else tensor
        stacked = self._stacked_name(role, layer, expert)
        if stacked is not None:
            # one expert's contiguous range of the stack, not the whole [experts, out, in] block
            return self.source.get_slice(stacked, expert, float32) if float32 else self.source.get_slice(stacked, expert)
        for fused, parts in FUSED.items():
            if role in parts and (fused, layer, None) in self._index:
                whole = self.get(fused, layer, float32=float32)
                return torch.split(whole, self._split_sizes(fused, whole.shape[0]), dim=0)[parts.index(role)]
        return None

    def row_blocks(self, role: str, rows: int, float32: bool = False):
        """A layer-less role's tensor (the embedding) in blocks of `rows` rows, as (first row, block) pairs:
        read block by block where the format has random access and the tensor is stored untransposed, so that
        a 150k-token embedding never sits whole in float32 memory; otherwise read once and sliced."""
        name = self.name_of(role)
        if name is None:
            return
        shape = self.shape(role)
        if self.source.random_access and not self.roles[name].transposed and len(shape) == 2:
            for start in range(0, shape[0], rows):
                yield start, self.source.get_rows(name, start, min(shape[0], start + rows), float32)
            return
        whole = self.get(role, float32=float32)
        for start in range(0, whole.shape[0], rows):
            yield start, whole[start:start + rows]

    def _split_sizes(self, fused: str, rows: int) -> list[int]:
        parts = len(FUSED[fused])
        if fused.startswith("attn.qkv"):
            heads, kv = self.config_value("num_attention_heads"), self.config_value("num_key_value_heads")
            if heads and kv and rows % (heads + 2 * kv) == 0:
                hd = rows // (heads + 2 * kv)
                return [heads * hd, kv * hd, kv * hd]
        if rows % parts:
            raise MalformedInput(f"fused {fused} has {rows} rows, not divisible into {parts} parts")
        return [rows // parts] * parts

    def experts(self, layer: int) -> list[int]:
        idx = sorted({r.expert for r in self.roles.values() if r.layer == layer and r.expert is not None})
        if idx:
            return idx
        stacked = self.name_of("moe.experts.up", layer)
        return list(range(self.source.infos()[stacked].shape[0])) if stacked else []

    # --- facts -----------------------------------------------------------------
    def config_value(self, fact: str):
        for key in CONFIG_ALIASES.get(fact, (fact,)):
            value = self.source.config.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    @cached_property
    def num_layers(self) -> int:
        layers = {r.layer for r in self.roles.values() if r.layer is not None}
        return max(layers) + 1 if layers else 0

    @cached_property
    def facts(self) -> dict:
        infos = self.source.infos()
        embed = self.shape("embed")
        q = self.shape("attn.q", 0) or self.shape("attn.q_b", 0)
        k = self.shape("attn.k", 0)
        hidden = embed[1] if embed else (q[1] if q else None)
        heads = self.config_value("num_attention_heads")
        if heads is None and q and self.shape("attn.q_norm", 0):
            heads = q[0] // self.shape("attn.q_norm", 0)[0]
        kv_heads = self.config_value("num_key_value_heads")
        if kv_heads is None and heads and q and k and q[0] % heads == 0:
            head_dim = q[0] // heads
            kv_heads = k[0] // head_dim if k[0] % head_dim == 0 else None
        if kv_heads is None and heads and not self.has("attn.kv_a", 0):
            kv_heads = heads if q == k else None
        num_experts = max((len(self.experts(i)) for i in range(self.num_layers)), default=0)
        up = self.shape("mlp.up", 0)
        return {
            "num_layers": self.num_layers,
            "hidden_size": hidden,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "num_experts": num_experts,
            "intermediate_size": up[0] if up else self.config_value("intermediate_size"),
            "vocab_size": embed[0] if embed else self.config_value("vocab_size"),
            "num_parameters": sum(i.numel for i in infos.values()),
            "dtypes": sorted({i.dtype for i in infos.values()}),
        }

    def check_config(self) -> None:
        """A config.json that disagrees with the tensors is a malformed input, not a hint to trust."""
        facts = self.facts
        for fact in ("num_layers", "hidden_size"):
            claimed, actual = self.config_value(fact), facts[fact]
            if claimed is not None and actual is not None and claimed != actual:
                raise MalformedInput(f"config says {fact}={claimed} but the tensors give {actual}",
                                     self.source.root)
        heads, q = facts["num_attention_heads"], self.shape("attn.q", 0)
        if heads is not None and (heads <= 0 or (q is not None and q[0] % heads)):
            raise MalformedInput(f"config says {heads} attention heads, which do not divide the {q[0] if q else '?'} query rows",
                                 self.source.root)

    def layer_roles(self, layer: int) -> dict[str, str]:
        return {r.role: name for name, r in self.roles.items() if r.layer == layer and r.expert is None}
