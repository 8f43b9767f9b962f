"""The one place this package imports the backend registry from."""
from backends import available_backends, get_backend  # noqa: F401
