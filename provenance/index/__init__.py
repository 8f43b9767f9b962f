"""The fingerprint index: many models in one SQLite file, one-to-many search, family trees, exchange and batch."""
from .batch import add_many, collect_inputs
from .search import search
from .store import Store

__all__ = ["Store", "add_many", "collect_inputs", "search"]
