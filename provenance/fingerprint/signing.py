"""ed25519 signatures over a fingerprint's digest, with keys the user manages (the `cryptography` library).

A signature proves who wrote the fingerprint file: the holder of the private key. It does not prove that
the weights the document names are the weights it was computed from (`fingerprint verify` checks that).

Keys: a PEM private key signs (`openssl genpkey -algorithm ed25519 -out key.pem`, or `provenance fingerprint
keygen`); a PEM public key, or a folder of them, is what a reader trusts (`--trust`).
"""
from __future__ import annotations

from pathlib import Path

from .. import limits
from ..errors import MalformedInput, Unsupported
from .integrity import SIGNATURE_KEY, SIGNER_KEY

MAX_KEY_BYTES = 16 << 10


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise Unsupported("signing needs the cryptography package: pip install 'provenance-verifier[sign]'") from None
    return serialization, ed25519, InvalidSignature


def _pem(path: str | Path, what: str) -> bytes:
    limits.regular_file(path, what)
    data = Path(path).read_bytes()
    if len(data) > MAX_KEY_BYTES:
        raise MalformedInput(f"{what} is larger than a key file", path)
    return data


def load_private_key(path: str | Path):
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(_pem(path, "signing key"), password=None)
    except (ValueError, TypeError) as exc:
        raise MalformedInput(f"not an unencrypted PEM private key ({str(exc)[:120]})", path) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise Unsupported("signing key is not an ed25519 key", path)
    return key


def load_public_key(path: str | Path):
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_public_key(_pem(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise MalformedInput(f"not a PEM public key ({str(exc)[:120]})", path) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise Unsupported("public key is not an ed25519 key", path)
    return key


def raw_public(key) -> str:
    serialization, _, _ = _crypto()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign(digest_text: str, key_path: str | Path) -> dict[str, str]:
    """Metadata entries: the signature over the digest and the signer's raw public key (hex)."""
    key = load_private_key(key_path)
    return {SIGNATURE_KEY: key.sign(digest_text.encode()).hex(), SIGNER_KEY: raw_public(key.public_key())}


def verify_signature(digest_text: str, meta: dict, path) -> str:
    """Check the stored signature against the stored signer key; returns the signer (hex). This proves the
    file is as its signer wrote it; whether that signer is trusted is `trusted_signer`'s question."""
    _, ed25519, InvalidSignature = _crypto()
    signature, signer = meta.get(SIGNATURE_KEY), meta.get(SIGNER_KEY)
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer or ""))
        key.verify(bytes.fromhex(signature or ""), digest_text.encode())
    except (ValueError, InvalidSignature):
        raise MalformedInput("fingerprint signature does not verify: the file was altered or the signature "
                             "forged; refused", path) from None
    return signer


def trusted_keys(trust: str | Path) -> dict[str, Path]:
    """Raw public keys (hex) -> their file, from a PEM file or a folder of *.pem / *.pub files."""
    trust = Path(trust)
    files = sorted(p for p in trust.iterdir() if p.suffix in (".pem", ".pub")) if trust.is_dir() else [trust]
    return {raw_public(load_public_key(f)): f for f in files}


def generate(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new ed25519 key pair (private key readable by the owner only); returns the public key (hex)."""
    import os
    serialization, ed25519, _ = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    from ..atomic import write_bytes
    write_bytes(public_path, public)
    return raw_public(key.public_key())
