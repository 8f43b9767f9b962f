"""`python -m provenance`: the same command as the `provenance` script."""
from .interrupt import entry

if __name__ == "__main__":
    entry()
