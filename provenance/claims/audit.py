"""Artifact audit: what the released files say about who made the model and where.

Every finding is a Check of kind "audit": it reads artifacts and recomputes nothing, so most
findings are weak. Another family's exact published config is the strong one: a from-scratch
model has no reason to land on every shape value of someone else's release.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import MalformedInput
from ..io import load_config, load_vocab
from ..io.safetensors_reader import read_header
from . import known
from .checks import Check
from .claimfile import Claim

MAX_CODE_BYTES = 4 << 20      # modeling files larger than this are not scanned
MAX_CODE_FILES = 200
HEADER_LINES = 40             # copyright headers live at the top of a file
COPYRIGHT = re.compile(r"copyright\s*(?:\(c\)|©)?\s*(?:\d{4}(?:\s*[-,]\s*\d{4})*)?\s*(?:by\s+)?(.+)", re.I)
TOKENIZER_OVERLAP = 0.9       # share of token strings at the same id that means the same tokenizer
BYTE_LEVEL_VOCAB = 260        # a byte vocabulary (256 tokens and a few specials) is what anyone would build


def _org(text: str) -> str | None:
    # a header naming a known organization beside a neutral one ("Qwen team ... and the HuggingFace team") counts
    low = text.lower()
    for pattern, name in known.ORGANIZATIONS.items():
        if re.search(pattern, low):
            return name
    return None


def claimed_vendor(claim: Claim) -> str:
    """The claim's vendor, spelled as the table of known vendors spells it.

    Args:
        claim: the parsed claim.
    Returns:
        The canonical vendor name, else the claim's own words ("" when none).
    """
    vendor = (claim.claim.get("vendor") or "").strip().lower()
    return known.VENDORS.get(vendor, claim.claim.get("vendor") or "")


def claimed_platform(claim: Claim) -> dict | None:
    """The known chip the claim names (the longest table name found in its chip field).

    Args:
        claim: the parsed claim.
    Returns:
        {"name", "vendor", "platform", "dtypes"}, or None when the chip is not in the table.
    """
    chip = (claim.claim.get("chip") or "").strip().lower()
    for name in sorted(known.CHIPS, key=len, reverse=True):  # "ascend 910b" before "ascend 910"
        if name in chip:
            return {"name": name, **known.CHIPS[name]}
    return None


def _model_dir(claim: Claim) -> Path:
    path = claim.model["path"]
    return path if path.is_dir() else path.parent


def audit_claim_itself(claim: Claim) -> list[Check]:
    """The claim against itself: a chip that cannot compute the claimed dtype, a vendor that does not make the chip.

    Args:
        claim: the parsed claim.
    Returns:
        Its Checks (audit kind), empty when there is nothing to look at.
    """
    out = []
    chip = claimed_platform(claim)
    dtype = claim.claim.get("dtype")
    if chip is None:
        if claim.claim.get("chip"):
            out.append(Check("claim.chip", "neutral", "none", f"chip {claim.claim['chip']!r} is not in the chip table; "
                                                                "its precision support was not checked"))
        return out
    if dtype and dtype not in chip["dtypes"]:
        out.append(Check("claim.dtype", "contradicts", "strong",
                         f"{claim.claim['chip']} has no native {dtype} (supports {', '.join(chip['dtypes'])})"))
    vendor = claimed_vendor(claim)
    if vendor and chip["vendor"] and vendor != chip["vendor"] and vendor.lower() in {v.lower() for v in known.VENDORS.values()}:
        # a lab's own name as vendor is fine (a lab trains on someone's chips); only a chip maker mismatch is odd
        if vendor in {c["vendor"] for c in known.CHIPS.values()}:
            out.append(Check("claim.vendor", "contradicts", "weak", f"{claim.claim['chip']} is made by {chip['vendor']}, not {vendor}"))
    return out


def audit_config(claim: Claim) -> list[Check]:
    """config.json against every published config in the table.

    Args:
        claim: the parsed claim.
    Returns:
        Its Checks (audit kind), empty when there is nothing to look at.
    """
    cfg = load_config(_model_dir(claim))
    if not cfg:
        return [Check("audit.config", "neutral", "none", "no config.json beside the weights")]
    vendor = claimed_vendor(claim)
    out = []
    for name, (org, values) in known.PUBLISHED_CONFIGS.items():
        present = [k for k in values if k in cfg]
        if len(present) < min(known.MIN_MATCHED_KEYS, len(values)) or len(present) < len(values) - 1:
            continue
        if all(_same(cfg[k], values[k]) for k in present):
            own = vendor and vendor == org
            keys = ", ".join(f"{k}={values[k]}" for k in present)
            out.append(Check("audit.config", "supports" if own else "contradicts", "weak" if own else "strong",
                             f"config.json has every published shape value of {name} by {org} ({keys})",
                             data={"family": name, "organization": org, "matched_keys": present}))
    if not out:
        out.append(Check("audit.config", "neutral", "none",
                         f"config.json matches none of {len(known.PUBLISHED_CONFIGS)} published configs in the table"))
    return out


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _code_files(root: Path) -> list[Path]:
    files = []
    for p in sorted(root.rglob("*.py")):
        if p.is_symlink() or not p.is_file() or p.stat().st_size > MAX_CODE_BYTES:
            continue  # a link may point anywhere: the audit reads only files that are in the release
        files.append(p)
        if len(files) >= MAX_CODE_FILES:
            break
    return files


def audit_code(claim: Claim) -> list[Check]:
    """Modeling code shipped in the release: platform imports and copyright holders.

    Args:
        claim: the parsed claim.
    Returns:
        Its Checks (audit kind), empty when there is nothing to look at.
    """
    root = _model_dir(claim)
    platform = claimed_platform(claim)
    vendor = claimed_vendor(claim)
    out = []
    for path in _code_files(root):
        rel = str(path.relative_to(root))
        text = path.read_bytes().decode("utf-8", errors="replace")
        for line in text.splitlines()[:HEADER_LINES]:
            m = COPYRIGHT.search(line)
            org = _org(m.group(1)) if m else None
            if org is None:
                continue
            if vendor and org == vendor:
                out.append(Check("audit.code.copyright", "supports", "weak", f"{rel}: copyright header of the claimed vendor ({line.strip()[:120]})"))
            else:
                out.append(Check("audit.code.copyright", "contradicts", "weak",
                                 f"{rel}: copyright header of another organization, {org} ({line.strip()[:120]}); "
                                 "reused, properly licensed modeling code is weak evidence about the weights"))
            break
        markers = {}
        for pattern, (target, what) in known.CODE_MARKERS.items():
            if re.search(pattern, text, re.M):
                markers.setdefault(target, what)
        for target, what in markers.items():
            if platform is None:
                result = "neutral"
            else:
                result = "supports" if target in known.PLATFORM_MARKERS.get(platform["platform"], ()) else "contradicts"
            out.append(Check("audit.code.platform", result, "weak" if result != "neutral" else "none",
                             f"{rel} {what}: a deployment target, not proof of where training ran"))
    return out


def audit_files(claim: Claim) -> list[Check]:
    """Framework side-files and the safetensors metadata of the weights.

    Args:
        claim: the parsed claim.
    Returns:
        Its Checks (audit kind), empty when there is nothing to look at.
    """
    root = _model_dir(claim)
    framework = known.FRAMEWORKS.get((claim.claim.get("framework") or "").strip().lower())
    out = []
    for name, fw in known.SIDE_FILES.items():
        if (root / name).is_file():
            result = "neutral" if framework is None else ("supports" if fw == framework else "contradicts")
            out.append(Check("audit.side_file", result, "weak" if result != "neutral" else "none",
                             f"{name} beside the weights is written by {fw}"))
    files = [claim.model["path"]] if claim.model["path"].is_file() else sorted(root.glob("*.safetensors"))
    formats, dtypes = set(), set()
    for f in files:
        if f.name.endswith(".safetensors") and not f.is_symlink():
            try:
                infos, meta = read_header(f)
            except MalformedInput:
                raise
            if "format" in meta:
                formats.add(str(meta["format"]))
            dtypes |= {i.dtype for i in infos.values()}
    for fmt in sorted(formats):
        fw = known.METADATA_FORMATS.get(fmt.lower())
        result = "neutral" if (framework is None or fw is None or fw != framework) else "supports"
        out.append(Check("audit.metadata", result, "weak" if result == "supports" else "none",
                         f"safetensors metadata format={fmt!r} ({fw or 'unknown'}): records the serializing framework, "
                         "which conversion for a hub changes; forgeable"))
    if dtypes:
        out.append(Check("audit.dtypes", "neutral", "none", f"stored dtypes {', '.join(sorted(dtypes))}: "
                         "the export dtype is a choice at release and says little about training precision"))
    return out


GGUF_KEYS = ("general.name", "general.author", "general.organization", "general.license", "general.base_model.count")


def _gguf_fields(path: Path) -> dict:
    try:
        from gguf import GGUFReader
    except ImportError:
        return {}
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the gguf library raises many types on corrupt files
        raise MalformedInput(f"GGUF metadata unreadable ({type(exc).__name__}: {exc})", path) from None
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("general."):
            try:
                out[key] = field.contents()
            except Exception:
                continue
    return out


def audit_gguf(claim: Claim) -> list[Check]:
    """GGUF metadata: the organization and base models the file declares (anyone converting it can write them).

    Args:
        claim: the parsed claim.
    Returns:
        Its Checks (audit kind), empty when there is nothing to look at.
    """
    path = claim.model["path"]
    if not (path.is_file() and path.suffix == ".gguf"):
        return []
    fields = _gguf_fields(path)
    vendor = claimed_vendor(claim)
    out = []
    org = _org(" ".join(str(fields.get(k, "")) for k in ("general.organization", "general.author")))
    if org:
        result = "supports" if org == vendor else "contradicts"
        out.append(Check("audit.gguf.organization", result, "weak", f"GGUF metadata names {org}; converters write it too"))
    count = fields.get("general.base_model.count") or 0
    bases = [str(fields.get(f"general.base_model.{i}.name", "")) for i in range(int(count) if str(count).isdigit() else 0)]
    bases = [b for b in bases if b and b != claim.label]
    if bases and claim.claim["origin"] == "from-scratch":
        out.append(Check("audit.gguf.base_model", "contradicts", "weak",
                         f"GGUF metadata declares base model(s) {', '.join(bases)}; a converter may have written it"))
    return out


def audit_tokenizer(claim: Claim) -> list[Check]:
    """The model's tokenizer against each suspect's, when both ship one.

    Args:
        claim: the parsed claim.
    Returns:
        Its Checks (audit kind), empty when there is nothing to look at.
    """
    tokens, _ = load_vocab(_model_dir(claim))
    if tokens is None:
        return []
    out = []
    for s in claim.suspects:
        if not s["path"].is_dir():
            continue
        theirs, _ = load_vocab(s["path"])
        if not theirs:
            continue
        n = min(len(tokens), len(theirs))
        same = sum(a == b for a, b in zip(tokens[:n], theirs[:n])) / max(len(tokens), len(theirs))
        label = s.get("label") or s["path"].name
        if max(len(tokens), len(theirs)) <= BYTE_LEVEL_VOCAB:
            out.append(Check("audit.tokenizer", "neutral", "none", f"byte-level vocabularies ({len(tokens)} tokens) "
                             f"carry no trace of reuse; {same:.0%} of ids agree with {label}'s", data={"suspect": label, "same_id_share": same}))
        elif same >= TOKENIZER_OVERLAP:
            out.append(Check("audit.tokenizer", "contradicts", "weak",
                             f"{same:.0%} of token strings sit at the same ids as {label}'s tokenizer: the tokenizer is "
                             "reused; tokenizers are often reused under license, so this is weak evidence about the weights",
                             data={"suspect": label, "same_id_share": same}))
        else:
            out.append(Check("audit.tokenizer", "neutral", "none", f"{same:.0%} of token ids agree with {label}'s tokenizer",
                             data={"suspect": label, "same_id_share": same}))
    return out


AUDITS = (audit_claim_itself, audit_config, audit_code, audit_files, audit_gguf, audit_tokenizer)


def run_audit(claim: Claim) -> list[Check]:
    """Every audit finding for the claim, in a fixed order.

    Args:
        claim: a parsed claim.
    Returns:
        Checks of kind "audit".
    """
    out = []
    for audit in AUDITS:
        out += audit(claim)
    return out
