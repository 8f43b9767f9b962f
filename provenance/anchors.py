"""Anchor tokens: a fixed, model-independent choice of tokens that two models can share.

Tokens are put in one canonical spelling (tokenizers mark a leading space as 'Ġ', '▁'
or by the absence of '##'), then the n whose hash is smallest are kept. The same
string hashes the same in every model, so models with different vocabularies still
pick mostly the same anchors, and models with the same vocabulary pick exactly the same.
"""
from __future__ import annotations

import hashlib
import re

# leading marker -> canonical prefix; first match wins
SPACE_MARKERS = (("Ġ", " "), ("▁", " "), ("##", ""))
_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def canonical(token: str, wordpiece: bool = False) -> str:
    for marker, replacement in SPACE_MARKERS:
        if token.startswith(marker):
            return replacement + token[len(marker):]
    if wordpiece and not token.startswith("["):
        return " " + token  # a WordPiece token without ## begins a word
    return _BYTE.sub(lambda m: chr(int(m.group(1), 16)), token)


def token_rank(token: str) -> bytes:
    """The hash order in which canonical tokens are chosen (the same in every model)."""
    return hashlib.sha1(token.encode("utf-8", "surrogatepass")).digest()


_rank = token_rank


def choose_anchors(tokens: list[str] | None, vocab_rows: int, n: int) -> tuple[list[str], list[int], str]:
    """(canonical strings, row ids, how tokens were identified)."""
    if tokens:
        wordpiece = any(t.startswith("##") for t in tokens[:50000])
        seen: dict[str, int] = {}
        for idx, tok in enumerate(tokens[:vocab_rows]):
            if tok:
                seen.setdefault(canonical(tok, wordpiece), idx)
        chosen = sorted(seen, key=_rank)[:n]
        return chosen, [seen[c] for c in chosen], "token strings"
    ids = [f"id:{i}" for i in range(vocab_rows)]
    chosen = sorted(ids, key=_rank)[:n]
    return chosen, [int(c[3:]) for c in chosen], "token ids (no tokenizer found: assumes a shared vocabulary)"
