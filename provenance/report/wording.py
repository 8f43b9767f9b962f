"""Plain words for the reports: what each verdict means and does not mean, and how to read a p-value.

One table, read by the suite report and the per-pair report, so the two never say different things.
"""
from __future__ import annotations

from .render import format_p

# verdict -> (headline, what it means, what it does not mean)
VERDICT_WORDS = {
    "derived": (
        "evidence of shared lineage",
        "The layers that correspond in the two models are far more alike than the same models' layers that do not "
        "correspond, by more than the margin the decision rule requires. That is what one model built from the other "
        "(fine-tuned, pruned, re-scaled, upcycled...) or both built from a common ancestor looks like.",
        "It is evidence, never proof. Weights cannot say which model came first, and a derived verdict says nothing "
        "about licences or intent.",
    ),
    "independent": (
        "no sign of shared lineage",
        "No signal departs from what unrelated layers of the same two models look like: the corresponding layers are no "
        "more alike than any other pair.",
        "It is not proof of independence. A derivation that leaves no trace in weights, such as distillation (training "
        "one model on another's outputs), would look the same.",
    ),
    "inconclusive": (
        "the tool abstains",
        "The evidence falls between the thresholds for the other two verdicts, so the tool does not guess.",
        "It is neither an accusation nor a clearance; the reason says what was missing.",
    ),
}


def verdict_words(verdict: str) -> tuple[str, str, str]:
    """(headline, meaning, not meaning) for a verdict; an unknown verdict is named, not explained.

    Args:
        verdict: derived, independent or inconclusive.
    Returns:
        Three sentences for people.
    """
    return VERDICT_WORDS.get(verdict, (verdict, f"The tool returned '{verdict}'.", "See the reason below."))


def deciding_signal(result: dict) -> dict | None:
    """The used, calibrated signal with the smallest p-value: the one the combined p-value comes from.

    Args:
        result: the comparison document.
    Returns:
        The signal's record, or None when no calibrated signal was used.
    """
    used = [s for s in result.get("signals", []) if s.get("used") and s.get("p_value") is not None]
    return min(used, key=lambda s: s["p_value"]) if used else None


def null_size(signal: dict | None) -> int | None:
    """How many null values a signal's p-value was fitted to.

    Args:
        signal: a signal record, or None.
    Returns:
        The count, or None when it has no null.
    """
    values = (signal or {}).get("null_values")
    return None if values is None else len(values)


def p_with_null(p, n: int | None) -> str:
    """'< 1e-12 (null of 12)': the p-value as read, beside the number of values its null was fitted to.

    Args:
        p: the p-value, or None.
        n: the null's size, or None.
    Returns:
        The text.
    """
    text = format_p(p)
    return text if p is None or n is None else f"{text} (null of {n})"


def p_value_note(n: int | None) -> str:
    """What a Gaussian tail fitted to n null values can and cannot say about a very small p-value.

    Args:
        n: the null's size.
    Returns:
        The note; "" when there is no null.
    """
    if not n:
        return ""
    resolution = 1.0 / (n + 1)
    return (f"Each is the tail of a Gaussian curve fitted (by median and spread) to the "
            f"{n} layer pairs that do not correspond. With {n} values, the data alone can show at most that an "
            f"observation lies beyond all of them, a chance of about 1 in {n + 1} ({resolution:.2g}). Anything "
            "smaller is the fitted curve's extrapolation: read a tiny p-value as 'far outside anything the null "
            "produced', not as an exact probability. That is why the decision rule also asks for a large effect.")
