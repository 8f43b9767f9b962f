"""The fingerprint index: many models in one SQLite file, one-to-many search, family trees, exchange and batch.

Entry points: store.Store, batch.add_many, search.search, tree.build_tree, exchange.export_index / import_index.
"""
from .batch import add_many, collect_inputs
from .store import Store

__all__ = ["Store", "add_many", "collect_inputs"]
