"""Training text from the Python standard library's own source, and the tiny vocabularies."""
from __future__ import annotations

import hashlib
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch

# Two disjoint slices of the stdlib: bases learn from top-level modules, derivatives are
# fine-tuned on packages, so "fine-tuned on other data" means what it says.
CORPORA = {
    "base": ("*.py", 600_000),
    "other": ("*/*.py", 400_000),
}


@lru_cache(maxsize=None)
def corpus_text(name: str) -> bytes:
    pattern, limit = CORPORA[name]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(stdlib.glob(pattern)):
        if "test" in path.parts[-2:] or "site-packages" in path.parts:
            continue
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= limit:
            break
    return b"".join(chunks)[:limit]


def corpus_digest() -> str:
    h = hashlib.sha256()
    for name in sorted(CORPORA):
        h.update(corpus_text(name))
    return h.hexdigest()[:16]


def byte_token(b: int) -> str:
    return chr(b) if 33 <= b < 127 else f"<0x{b:02X}>"


class Vocab:
    """Byte tokens plus optional merged pairs, tokenized greedily; ids are a permutation."""

    def __init__(self, tokens: list[str], merges: dict[bytes, str]):
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.merges = merges

    @classmethod
    def bytes_only(cls) -> "Vocab":
        return cls([byte_token(b) for b in range(256)], {})

    @classmethod
    def with_merges(cls, text: bytes, n_merges: int, seed: int) -> "Vocab":
        counts: dict[bytes, int] = {}
        for i in range(0, min(len(text), 200_000) - 1):
            pair = text[i: i + 2]
            counts[pair] = counts.get(pair, 0) + 1
        top = sorted(counts, key=lambda p: (-counts[p], p))[:n_merges]
        merges = {p: "".join(byte_token(b) for b in p) for p in top}
        tokens = [byte_token(b) for b in range(256)] + list(merges.values())
        order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed)).tolist()
        return cls([tokens[i] for i in order], merges)

    def encode(self, text: bytes) -> torch.Tensor:
        out, i = [], 0
        while i < len(text):
            pair = text[i: i + 2]
            if pair in self.merges:
                out.append(self.ids[self.merges[pair]])
                i += 2
            else:
                out.append(self.ids[byte_token(text[i])])
                i += 1
        return torch.tensor(out, dtype=torch.long)

    def components(self, token: str) -> list[str]:
        """The byte tokens a merged token is made of (itself for a byte token)."""
        for pair, name in self.merges.items():
            if name == token:
                return [byte_token(b) for b in pair]
        return [token]
