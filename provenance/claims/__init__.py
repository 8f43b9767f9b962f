"""Platform claims: which published artifacts are consistent with "model M was trained on platform P"."""
