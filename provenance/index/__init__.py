"""The fingerprint index: many models in one SQLite file, one-to-many search, family trees, exchange and batch.

Entry points: store.Store, batch.add_many, search.search, tree.build_tree, exchange.export_index / import_index.
The exports load on first use, so the command line (which registers the `index` sub-app) starts without torch.
"""
import importlib

_EXPORTS = {"Store": "store", "add_many": "batch", "collect_inputs": "batch"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
