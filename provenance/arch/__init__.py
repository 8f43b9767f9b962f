"""Family tables and the canonical view of a model."""
from .families import FAMILIES, FUSED, GLOBAL_ROLES, LAYER_ROLES, Family
from .view import ModelView, RoleRef, detect_family, map_names

__all__ = ["FAMILIES", "FUSED", "GLOBAL_ROLES", "LAYER_ROLES", "Family", "ModelView", "RoleRef",
           "detect_family", "map_names"]
