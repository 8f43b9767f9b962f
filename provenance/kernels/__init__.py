"""Fingerprint and lineage kernels: pure torch functions, one implementation for every backend."""
from .assignment import match, neuron_similarity
from .body import add_gram, fold_columns, mirror, ov_product, polar, principal_basis, qk_product, repeat_heads, unit_rows
from .cka import cka_matrix, gram, unbiased_cka
from .features import anchor_inputs, neuron_profiles, projection_features
from .forward import block_forward
from .stats import fold_norm, pearson, rms_rows, row_corr, standardize_rows, std, zscore

__all__ = ["add_gram", "mirror", "fold_columns", "ov_product", "polar", "principal_basis", "qk_product", "repeat_heads", "unit_rows", "anchor_inputs", "neuron_profiles", "projection_features", "block_forward", "fold_norm", "match", "neuron_similarity", "cka_matrix", "gram", "unbiased_cka", "pearson", "rms_rows",
           "row_corr", "standardize_rows", "std", "zscore"]
