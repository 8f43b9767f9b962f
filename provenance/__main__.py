"""`python -m provenance`: the same command as the `provenance` script."""
from .cli import entry

if __name__ == "__main__":
    entry()
