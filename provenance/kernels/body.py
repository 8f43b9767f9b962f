"""Body-only kernels: weight-space objects that never pass through a model's embeddings.

With each norm's weight folded into the matrices that read its output, a rotation R of the
residual stream maps every stored object equivariantly: neuron gate/up rows and down columns
g -> R g, attention products QK -> R QK R^T and OV -> R OV R^T. The products are invariant to
head permutation and to any per-head Q/K or V/O rescaling; neuron descriptors are compared by
cosine (invariant to up/down rescaling) with the up/down sign taken jointly.
"""
from __future__ import annotations

import torch


def fold_columns(w: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
    """W · diag(gamma): a norm weight folded into the matrix that reads the norm's output."""
    return w * gamma if gamma is not None and gamma.shape[-1] == w.shape[-1] else w


def repeat_heads(w: torch.Tensor, heads: int, kv_heads: int) -> torch.Tensor:
    """[kv_heads*hd, hidden] K or V rows repeated so that each query head has its own (grouped-query attention)."""
    if kv_heads == heads:
        return w
    hd = w.shape[0] // kv_heads
    return w.reshape(kv_heads, hd, -1).repeat_interleave(heads // kv_heads, dim=0).reshape(heads * hd, -1)


def qk_product(q: torch.Tensor, k: torch.Tensor, heads: int, kv_heads: int,
               basis: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over heads of W_q^h^T W_k^h (norm-folded Q and K): [hidden, hidden], or with a [hidden, d] `basis`
    the [d, d] product in its coordinates, B^T Q^T K B, computed as (Q B)^T (K B) without ever forming
    the hidden x hidden matrix (hidden/d times fewer operations)."""
    if basis is not None:
        q, k = q @ basis, k @ basis
    return q.T @ repeat_heads(k, heads, kv_heads)


def ov_product(o: torch.Tensor, v: torch.Tensor, heads: int, kv_heads: int,
               basis: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over heads of W_o^h W_v^h (norm-folded V): [hidden, hidden], or with a [hidden, d] `basis` the
    [d, d] product B^T O V B, computed as (B^T O)(V B)."""
    if basis is not None:
        o, v = basis.T @ o, v @ basis
    return o @ repeat_heads(v, heads, kv_heads)


def add_gram(gram: torch.Tensor, rows: torch.Tensor, blocks: int = 4, chunk: int = 1024) -> None:
    """gram += rows^T rows, `chunk` rows at a time, in the Gram's dtype on its device. Only the upper
    blocks of a blocks x blocks tiling are computed (the Gram is symmetric; `mirror` fills the rest)."""
    edges = torch.linspace(0, gram.shape[0], blocks + 1).round().long().tolist()
    for part in rows.split(chunk):
        part = part.to(gram.dtype)  # no-op unless the rows are narrower than the sum
        for a in range(blocks):
            left = part[:, edges[a]:edges[a + 1]].T
            for b in range(a, blocks):
                gram[edges[a]:edges[a + 1], edges[b]:edges[b + 1]].addmm_(left, part[:, edges[b]:edges[b + 1]])


def mirror(gram: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """The full symmetric Gram from the upper blocks add_gram computed (in place)."""
    edges = torch.linspace(0, gram.shape[0], blocks + 1).round().long().tolist()
    for a in range(blocks):
        for b in range(a + 1, blocks):
            gram[edges[b]:edges[b + 1], edges[a]:edges[a + 1]] = gram[edges[a]:edges[a + 1], edges[b]:edges[b + 1]].T
    return gram


def principal_basis(gram: torch.Tensor, k: int, probes: torch.Tensor | None = None) -> torch.Tensor:
    """[hidden, k] top-k eigenvectors of a symmetric Gram, signs fixed by the third moment of `probes` rows
    along each vector (rotation-equivariant, so two rotated copies of a model get the same coordinates)."""
    vals, vecs = torch.linalg.eigh(gram.double())
    basis = vecs[:, vals.argsort(descending=True)[:k]]
    if probes is not None:
        skew = ((probes.double() @ basis) ** 3).sum(dim=0)
        basis = basis * torch.where(skew < 0, -1.0, 1.0)
    return basis.to(gram.dtype)


def polar(m: torch.Tensor) -> torch.Tensor:
    """The orthogonal factor of m (orthogonal Procrustes: argmax_S trace(S^T m) over orthogonal S)."""
    u, _, vh = torch.linalg.svd(m)
    return u @ vh


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
