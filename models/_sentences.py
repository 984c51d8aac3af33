"""Plain-words sentences about one battle, one per explanation concept.

Each sentence states a fact read off the battle's own texts ("B is 3.1×
longer", "A refuses", "B uses headers and a list"); the explanation row
around it says which side the concept pushes toward. The facts are computed
with the same helpers the feature blocks use (markdown counts, refusal
phrases, word sets, scripts), so a sentence and its feature agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from features.blocks.flags import (
    SCRIPTS,
    count_refusal_phrases,
    is_truncated,
    script_fractions,
)
from features.blocks.similarity import word_set
from features.blocks.style import OPENERS, fast_syllables, markdown_counts
from features.text import TURN_SEPARATOR

_SIDES = ("A", "B")
# A refusal phrase counts when it starts this early in the last turn (the
# flags block's default window).
_REFUSAL_WINDOW = 300
# Length ratios below this read as "about as long".
_SAME_LENGTH = 1.15
# Word overlap (Jaccard) from which two answers read as near-identical.
_NEAR_IDENTICAL = 0.9
# Flesch points below which two answers read "about as easily".
_SAME_FLESCH = 5.0
_MIN_FLESCH_WORDS = 3
_EN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")
# Markdown element (key of markdown_counts) -> how a person names it.
_MARKDOWN_NAMES: dict[str, str] = {
    "headers": "headers",
    "list_items": "a list",
    "bold": "bold",
    "code_blocks": "code blocks",
    "table_rows": "a table",
    "links": "links",
    "latex": "math",
}
_OPENER_WORDS: dict[str, str] = {
    "certainly": '"Certainly"',
    "sure": '"Sure"',
    "of_course": '"Of course"',
    "absolutely": '"Absolutely"',
    "great_question": '"Great question"',
    "greeting": "a greeting",
    "as_an_ai": '"As an AI"',
}


def _join(words: list[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


@dataclass(frozen=True)
class BattleFacts:
    """The texts of one battle and facts computed from them on demand.

    Parameters
    ----------
    prompt : list of str
        Prompt turns.
    response_a, response_b : list of str
        Response turns of A and of B.
    """

    prompt: list[str]
    response_a: list[str]
    response_b: list[str]

    @cached_property
    def texts(self) -> tuple[str, str]:
        """The turns of A and of B, each joined by a blank line."""
        return (
            TURN_SEPARATOR.join(self.response_a),
            TURN_SEPARATOR.join(self.response_b),
        )

    @cached_property
    def chars(self) -> tuple[int, int]:
        """Characters of A and of B."""
        return len(self.texts[0]), len(self.texts[1])

    def refuses(self, side: int) -> bool:
        """Whether the last turn of a side opens with a refusal phrase."""
        turns = (self.response_a, self.response_b)[side]
        last = turns[-1] if turns else ""
        return count_refusal_phrases(last, window=_REFUSAL_WINDOW)[0] > 0

    def is_blank(self, side: int) -> bool:
        """Whether a side has no visible character."""
        return not self.texts[side].strip()

    @cached_property
    def markdown(self) -> tuple[list[str], list[str]]:
        """The markdown elements each side uses, as a person names them."""
        used = []
        for text in self.texts:
            counts = markdown_counts(text)
            used.append([name for key, name in _MARKDOWN_NAMES.items() if counts[key]])
        return used[0], used[1]

    def flesch(self, side: int) -> float | None:
        """Flesch reading ease of a side's English words; None with too few."""
        text = self.texts[side]
        words = _EN_WORD.findall(text)
        if len(words) < _MIN_FLESCH_WORDS:
            return None
        sentences = max(1, len(_SENTENCE_END.findall(text.strip())) or 1)
        syllables = sum(fast_syllables(word.lower()) for word in words)
        return 206.835 - 1.015 * len(words) / sentences - 84.6 * syllables / len(words)

    @cached_property
    def word_sets(self) -> tuple[set[str], set[str], set[str]]:
        """Distinct lower-cased words of the prompt, A and B."""
        prompt = TURN_SEPARATOR.join(self.prompt).casefold()
        return (
            word_set(prompt),
            word_set(self.texts[0].casefold()),
            word_set(self.texts[1].casefold()),
        )

    def script(self, text: str) -> str | None:
        """The main script of a text (latin, cjk, ...); None without letters."""
        fractions = script_fractions([text])[0]
        if fractions.sum() <= 0:
            return None
        return SCRIPTS[int(np.argmax(fractions))]


def _length(facts: BattleFacts, toward: str) -> str:
    a, b = facts.chars
    longer = 0 if a >= b else 1
    n_long, n_short = max(a, b), min(a, b)
    if n_short == 0:
        if n_long == 0:
            return "both answers are empty"
        return f"{_SIDES[longer]} has {n_long:,} characters, {_SIDES[1 - longer]} none"
    ratio = n_long / n_short
    if ratio < _SAME_LENGTH:
        return f"A and B are about as long ({a:,} and {b:,} characters)"
    return (
        f"{_SIDES[longer]} is {ratio:.1f}× longer ({n_long:,} vs {n_short:,} "
        "characters)"
    )


def _markdown(facts: BattleFacts, toward: str) -> str:
    used_a, used_b = facts.markdown
    if not used_a and not used_b:
        return "neither answer uses markdown"
    if not used_a:
        return f"B uses {_join(used_b)}; A uses none"
    if not used_b:
        return f"A uses {_join(used_a)}; B uses none"
    return f"A uses {_join(used_a)}; B uses {_join(used_b)}"


def _refusal(facts: BattleFacts, toward: str) -> str:
    states = []
    for side in (0, 1):
        if facts.is_blank(side):
            states.append("is empty")
        elif facts.refuses(side):
            states.append("refuses")
        else:
            states.append("")
    if states[0] and states[0] == states[1]:
        return {"is empty": "both answers are empty", "refuses": "both refuse"}[
            states[0]
        ]
    said = [f"{_SIDES[side]} {states[side]}" for side in (0, 1) if states[side]]
    if not said:
        return "neither answer refuses or is empty"
    return _join(said)


def _cut_off(facts: BattleFacts, toward: str) -> str:
    cut = [is_truncated(text) for text in facts.texts]
    if all(cut):
        return "both answers look cut off (they end mid-sentence)"
    if any(cut):
        return f"{_SIDES[cut.index(True)]} looks cut off (it ends mid-sentence)"
    return "neither answer looks cut off"


def _readability(facts: BattleFacts, toward: str) -> str:
    scores = [facts.flesch(0), facts.flesch(1)]
    if scores[0] is None or scores[1] is None:
        return f"the answers' wording and sentence length favour {toward}"
    if abs(scores[0] - scores[1]) < _SAME_FLESCH:
        return (
            f"A and B read about as easily (Flesch {scores[0]:.0f} and {scores[1]:.0f})"
        )
    easier = 0 if scores[0] > scores[1] else 1
    return (
        f"{_SIDES[easier]} reads more easily (Flesch {scores[easier]:.0f} vs "
        f"{scores[1 - easier]:.0f})"
    )


def _tone(facts: BattleFacts, toward: str) -> str:
    said = []
    turns = (facts.response_a, facts.response_b)
    for side in (0, 1):
        last = turns[side][-1].lstrip(" \t\n#>*_-\"'`") if turns[side] else ""
        opener = next(
            (_OPENER_WORDS[n] for n, rx in OPENERS.items() if rx.match(last)), None
        )
        if opener:
            said.append(f"{_SIDES[side]} opens with {opener}")
    if not said:
        return f"the tone of the answers (stock phrases, ! and ?) favours {toward}"
    return "; ".join(said)


def _language(facts: BattleFacts, toward: str) -> str:
    prompt = facts.script(TURN_SEPARATOR.join(facts.prompt))
    scripts = [facts.script(text) for text in facts.texts]
    if prompt is not None:
        off = [s for s in (0, 1) if scripts[s] not in (None, prompt)]
        if len(off) == 1:
            side = off[0]
            return (
                f"{_SIDES[side]} answers in {scripts[side]} script, the prompt is in "
                f"{prompt}"
            )
        if len(off) == 2:
            return f"both answer in another script than the prompt's ({prompt})"
        return f"both answer in the prompt's script ({prompt})"
    return f"the scripts of the answers favour {toward}"


def _similarity(facts: BattleFacts, toward: str) -> str:
    if facts.texts[0].strip() == facts.texts[1].strip():
        return "the answers are identical"
    prompt, words_a, words_b = facts.word_sets
    union = words_a | words_b
    jaccard = len(words_a & words_b) / len(union) if union else 1.0
    if jaccard >= _NEAR_IDENTICAL:
        return "the answers are near-identical"
    sentence = f"the answers share {jaccard:.0%} of their words"
    if prompt:
        cover = [len(prompt & words) / len(prompt) for words in (words_a, words_b)]
        sentence += (
            f"; A repeats {cover[0]:.0%} of the prompt's words, B {cover[1]:.0%}"
        )
    return sentence


def _content(facts: BattleFacts, toward: str) -> str:
    return f"what the answers say (their words and topics) favours {toward}"


def _prompt(facts: BattleFacts, toward: str) -> str:
    n_chars = len(TURN_SEPARATOR.join(facts.prompt))
    turns = len(facts.prompt)
    return (
        f"the kind of prompt ({n_chars:,} characters, {turns} turn"
        f"{'s' if turns != 1 else ''}) shifts the verdict toward {toward}"
    )


def _position(facts: BattleFacts, toward: str) -> str:
    return f"before reading the answers, the model leans toward {toward}"


def _other(facts: BattleFacts, toward: str) -> str:
    return f"other features favour {toward}"


SENTENCES: dict[str, Callable[[BattleFacts, str], str]] = {
    "length": _length,
    "markdown style": _markdown,
    "refusal or empty answer": _refusal,
    "cut-off answer": _cut_off,
    "readability": _readability,
    "tone": _tone,
    "language": _language,
    "similarity": _similarity,
    "content": _content,
    "prompt": _prompt,
    "position": _position,
    "other": _other,
}
"""Concept -> the function writing its sentence from the battle and the side."""
