"""The embedded default: tiny trained transformers, their derivatives and independent controls."""
from .build import DEMO_MODELS, TRANSFORMS, build, build_many, cache_root, parse_name

__all__ = ["DEMO_MODELS", "TRANSFORMS", "build", "build_many", "cache_root", "parse_name"]
