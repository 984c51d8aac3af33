"""Kinds of refusal: ethics/safety refusals, capability disclaimers, hard refusals.

Arena voters judge refusals by their reason. An ethics or safety refusal ("I
can't help with that, it is harmful", "As an AI language model, I must
not ...") is picked about 8% of the time by people (an LLM judge picks it
31%), while a capability disclaimer ("I can't browse the web", "as of my
knowledge cutoff", "I cannot see images") is penalised less, and less still
when an answer follows it. :func:`refusal_kinds` tells these apart per text,
for the ``flags`` block.

The cue phrases live in the package data file ``refusal_kinds.json`` (English,
Chinese, Spanish, Russian, German, French, Portuguese, Italian), compiled into
one regular expression per kind.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import NamedTuple

from features.blocks._phrases import compile_phrases
from features.text import find_words

__all__ = ["KINDS_RESOURCE", "RefusalKinds", "kind_phrases", "refusal_kinds"]

KINDS_RESOURCE = "refusal_kinds.json"
"""Package data file in ``features.blocks`` holding the cue phrases."""

_LISTS = (
    "declines",
    "strong_declines",
    "ethics_cues",
    "capability_cues",
    "self_capability_cues",
    "ai_self",
)
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u02bc\uff07\u00b4", "'"))


def normalise_for_cues(text: str) -> str:
    """Casefolded text with ``'`` apostrophes and single spaces, as cues are.

    >>> normalise_for_cues("I\u2019M   Sorry")
    "i'm sorry"
    """
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


@functools.cache
def kind_phrases() -> dict[str, dict[str, tuple[str, ...]]]:
    """The cue phrases of :data:`KINDS_RESOURCE`: list name -> language -> phrases.

    Raises
    ------
    FileNotFoundError
        The data file is not installed next to this module.

    Examples
    --------
    >>> "knowledge cutoff" in kind_phrases()["self_capability_cues"]["en"]
    True
    """
    resource = importlib.resources.files("features.blocks").joinpath(KINDS_RESOURCE)
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"refusal cue list {KINDS_RESOURCE!r} is missing from the "
            "features.blocks package. Reinstall the project (pip install -e .) so "
            "that its package data is included."
        ) from err
    return {
        name: {
            language: tuple(dict.fromkeys(normalise_for_cues(p) for p in phrases))
            for language, phrases in data[name].items()
        }
        for name in _LISTS
    }


@functools.cache
def _regexes() -> dict[str, re.Pattern[str]]:
    return {
        name: compile_phrases(p for group in languages.values() for p in group)
        for name, languages in kind_phrases().items()
    }


class RefusalKinds(NamedTuple):
    """What kind of refusal one answer is (see :func:`refusal_kinds`)."""

    ethics: bool
    capability: bool
    hard: bool


def refusal_kinds(
    text: str,
    *,
    declined: bool,
    window: int = 300,
    max_chars: int = 3000,
    hard_words: int = 50,
) -> RefusalKinds:
    """Classify one answer's refusal: ethics, capability, hard.

    Parameters
    ----------
    text : str
        The answer (its last turn).
    declined : bool
        Whether a generic refusal phrase (``flags``' refusal list) opens it.
    window : int, default=300
        Characters at the start of the normalised text where cues count.
    max_chars : int, default=3000
        Characters of the text read at all.
    hard_words : int, default=50
        Most words of a hard refusal.

    Returns
    -------
    RefusalKinds
        ``ethics``: a decline and an ethics cue (harmful, illegal,
        unethical, ... in eight languages) in the window, or a strong
        decline ("I must not", "I cannot and will not") there;
        ``capability``: in the window, a disclaimer about the model's own
        knowledge ("as of my knowledge cutoff", "my training data"), or a
        capability cue (browsing, real-time data, images, links) next to a
        decline or an AI self-reference ("as an AI", "I don't have");
        ``hard``: a refusal (``declined`` or ``ethics``) in at most
        ``hard_words`` words: a short answer that only refuses, not a hedge
        followed by an answer.

    Examples
    --------
    >>> refusal_kinds("I can't help with that, it is illegal.", declined=True)
    RefusalKinds(ethics=True, capability=False, hard=True)
    >>> refusal_kinds("I can't browse the web.", declined=True).ethics
    False
    >>> refusal_kinds("We built a real-time data pipeline.", declined=False)
    RefusalKinds(ethics=False, capability=False, hard=False)
    """
    norm = normalise_for_cues(text[:max_chars])
    head = norm[:window]
    regexes = _regexes()

    def found(name: str) -> bool:
        return regexes[name].search(head) is not None

    decline = declined or found("declines")
    ethics = found("strong_declines") or (decline and found("ethics_cues"))
    capability = found("self_capability_cues") or (
        found("capability_cues") and (decline or found("ai_self"))
    )
    hard = (ethics or declined) and len(find_words(text[:max_chars])) <= hard_words
    return RefusalKinds(ethics, capability, hard)
