"""Versions of every document the program writes. Bump a version when a field changes meaning
or disappears; adding a field is compatible. docs/SCHEMAS.md describes each document."""
SCHEMA_VERSIONS = {
    "inspect": "1.0",
    "backends": "1.0",
    "fingerprint": "2.0",
    "compare": "2.0",
    "drift": "1.0",
    "drift_compare": "1.0",
    "suite": "1.0",
}
