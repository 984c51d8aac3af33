"""One regular expression for a list of phrases, in any script.

Shared by the refusal flags and the refusal kinds: spaced scripts (Latin,
Cyrillic, Greek) match whole words only ("harm" must not hit "charm"), CJK,
kana, Hangul and Arabic phrases attach to their neighbours, and a phrase
ending in ``*`` is a stem ("вредн*" matches "вредный").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

__all__ = ["compile_phrases", "needs_boundary"]


def needs_boundary(char: str) -> bool:
    """Whether a phrase starting or ending with ``char`` matches whole words only.

    >>> needs_boundary("a"), needs_boundary("я"), needs_boundary("不")
    (True, True, False)
    """
    if not char.isalnum():
        return False
    if char.isascii():
        return True
    return unicodedata.name(char, "").split(" ")[0] in ("LATIN", "CYRILLIC", "GREEK")


def _trie_pattern(phrases: Iterable[str]) -> str:
    # One trie-shaped alternation: ``re`` tries each start position once
    # instead of once per phrase.
    trie: dict[str, Any] = {}
    for phrase in phrases:
        stem = phrase.endswith("*")
        phrase = phrase.rstrip("*")
        node = trie
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = r"(?!\w)" if needs_boundary(phrase[-1]) and not stem else ""

    def build(node: dict[str, Any]) -> str:
        options = [
            re.escape(c) + build(child) for c, child in sorted(node.items()) if c
        ]
        if "" in node:  # tried last, so the longest phrase wins
            options.append(node[""])
        return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"

    return build(trie) if trie else "(?!)"


def compile_phrases(phrases: Iterable[str]) -> re.Pattern[str]:
    """A pattern that finds any of ``phrases`` (empty ones ignored).

    >>> bool(compile_phrases(["harm"]).search("charm"))
    False
    >>> compile_phrases(["вредн*", "不能"]).findall("это вредный; 我不能")
    ['вредн', '不能']
    """
    phrases = sorted({p for p in phrases if p.rstrip("*")})
    bounded = [p for p in phrases if needs_boundary(p[0])]
    free = [p for p in phrases if not needs_boundary(p[0])]
    return re.compile(rf"(?<!\w){_trie_pattern(bounded)}|{_trie_pattern(free)}")
