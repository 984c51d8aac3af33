"""Synthetic demo battles in the Kaggle "LMSYS Chatbot Arena" train layout.

The real Kaggle file cannot ship with the project, yet ``make demo`` and the tests
need a table with the exact columns, the format quirks of the real file and a
signal that a model can learn. This module writes such a table from templates,
deterministically for a given seed.

Layout
------
``id, model_a, model_b, prompt, response_a, response_b, winner_model_a,
winner_model_b, winner_tie, source``: the Kaggle train columns plus ``source``.
``prompt``, ``response_a`` and ``response_b`` are JSON lists of strings, one per
turn, written with ``json.dumps`` (``ensure_ascii=True``), so non-ASCII text and
emoji appear as ``\\uXXXX`` escapes and surrogate pairs (``\\ud83c\\udf4d``),
as in the real file. Ids are unique integers, sorted ascending. The targets are
one-hot. About 87% of battles are single-turn, the rest have 2 or 3 turns.

Sources (share of rows; tie rate at 3,000 rows, seed 0):

- ``synthetic-chat`` (60%): general questions, mostly English. Ties 31%.
- ``synthetic-code`` (25%): coding questions with code blocks. Ties 26%.
- ``synthetic-multilingual`` (15%): Chinese, Russian and Spanish. Ties 34%.

Planted effects
---------------
Each side gets a latent score ``0.8 * log1p(chars) + 0.3 * markdown
- 2.0 * refusal - 2.5 * empty + model quality + noise``, ``noise ~ N(0, 0.4)``.
``chars`` counts the characters of all string turns, ``markdown`` means a
header or a list, a refusal is an answer such as "I'm sorry, but I can't help
with that." (English, Chinese, Russian or Spanish, ~4% of responses) and
``empty`` means null, empty or whitespace only. With
``d = score_a - score_b + 0.1`` (first-position bias), a battle is a tie with
probability ``0.07 + (peak - 0.07) * exp(-|d| / 0.6)``, where ``peak`` is 0.85,
0.55 or 0.98 by source; otherwise A wins with probability ``sigmoid(d)``.
Identical responses are a tie with probability 0.85.

At 3,000 rows, seed 0: A 36.5%, B 32.9%, tie 30.6%; the longer response wins
73% of decisive battles, a one-sided refusal loses 95% of them and identical
responses are ties in 88% of rows. The Bayes-optimal log loss is about 0.92
(class prior 1.096); a regularised GBDT on length, markdown, refusal and
empty-answer features reaches about 0.94 in 5-fold cross-validation.

Quirks
------
Rates are shares of rows; each quirk gets ``max(round(rate * n_rows),
min(3, n_rows // 300))`` rows, so at least 3 from 900 rows on. Quirk rows are
disjoint.

- ``null_turn`` (0.4%): a multi-turn response has a JSON ``null`` turn,
  ``["Hello", null]``.
- ``null_response`` (0.4%): one whole response is ``[null]``.
- ``both_null`` (0.1%): both responses are ``[null]``.
- ``empty_response`` (0.4%): one response is ``[""]``.
- ``both_empty`` (0.1%): both responses are ``[""]``.
- ``whitespace_response`` (0.3%): one response is whitespace only.
- ``identical_responses`` (2%): both sides give the same response.
- ``greeting_prompt`` (1.5%): the prompt is ``["hey"]``, ``["hi"]`` or
  ``["hello"]``, repeated across rows with different labels.
- ``emoji`` (3%): a prompt or response holds emoji (surrogate pairs in JSON).
- ``lone_surrogate`` (0.2%): a response holds a lone high surrogate, written as
  the raw escape ``\\ud83d`` that does not decode.
- ``invalid_json`` (0.35%): a field is not a JSON list: truncated
  (``["abc``) or plain text.
- ``non_string_turn`` (0.2%): a response turn is a number or a nested list.
- ``turn_mismatch`` (0.3%): a response has fewer or more turns than the
  prompt.
- Long fields: from 2,000 rows on, one prompt and one response are longer
  than 131,072 characters (Python's default csv field limit).

Labels are drawn from the content before ``non_string_turn``,
``turn_mismatch`` and ``invalid_json`` corrupt the fields.

Examples
--------
>>> battles = make_demo_battles(n_rows=50, seed=0)
>>> battles.shape
(50, 10)
>>> int(battles[list(TARGET_COLUMNS)].sum(axis=1).max())
1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pipelines._demo_words import (
    CODE_PROMPTS,
    CODE_SENTENCES,
    CODE_SNIPPETS,
    CODE_TASKS,
    EMOJI,
    EN_ADJECTIVES,
    EN_TOPICS,
    GREETING_REPLIES,
    GREETINGS,
    LEXICONS,
    WHITESPACE,
    Lexicon,
)
from pipelines._files import write_csv_atomic

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = tuple(
    "id model_a model_b prompt response_a response_b "
    "winner_model_a winner_model_b winner_tie source".split()
)
TARGET_COLUMNS: tuple[str, ...] = ("winner_model_a", "winner_model_b", "winner_tie")

LONG_FIELD_MIN_ROWS = 2000
_LONG_FIELD_CHARS = 135_000


@dataclass(frozen=True)
class _Source:
    weight: float
    tie_peak: float
    code_share: float
    markdown_rate: float
    refusal_rate: float
    languages: tuple[tuple[str, float], ...]


_CHAT_LANGUAGES = (("en", 0.92), ("zh", 0.04), ("es", 0.02), ("ru", 0.02))
_WORLD_LANGUAGES = (("zh", 0.35), ("ru", 0.30), ("es", 0.35))
# weight, tie_peak, code_share, markdown_rate, refusal_rate, language shares
_SOURCES: dict[str, _Source] = {
    "synthetic-chat": _Source(0.60, 0.85, 0.0, 0.35, 0.045, _CHAT_LANGUAGES),
    "synthetic-code": _Source(0.25, 0.55, 0.85, 0.50, 0.02, (("en", 1.0),)),
    "synthetic-multilingual": _Source(0.15, 0.98, 0.0, 0.25, 0.04, _WORLD_LANGUAGES),
}

# (name, quality, verbosity): quality shifts the latent score, verbosity the length.
_MODELS: tuple[tuple[str, float, float], ...] = (
    ("aurora-70b-chat", 0.30, 1.3),
    ("basalt-13b", -0.20, 0.8),
    ("cirrus-3.5-turbo", 0.10, 1.0),
    ("delta-7b-instruct", -0.30, 0.7),
    ("ember-34b", 0.00, 1.1),
    ("fjord-8x7b", 0.15, 1.2),
    ("granite-2-mini", -0.15, 0.6),
    ("helios-1.5-pro", 0.35, 1.5),
    ("iris-9b-it", -0.05, 0.9),
    ("juniper-405b", 0.25, 1.4),
    ("kestrel-4o-mini", 0.05, 1.0),
    ("lumen-1-preview", 0.20, 1.8),
)


@dataclass(frozen=True)
class _LabelModel:
    log_length: float = 0.8
    markdown: float = 0.3
    refusal: float = -2.0
    empty: float = -2.5
    noise_sd: float = 0.4
    position_bias: float = 0.10
    tie_floor: float = 0.07
    tie_scale: float = 0.6
    identical_tie: float = 0.85


_LABEL_MODEL = _LabelModel()


_MARKDOWN_PATTERN = re.compile(r"(?m)^(#{1,6} |\s*[-*] |\s*\d+\. )")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(template: str, noun: str, noun2: str, adj: str) -> str:
    capital = noun[:1].upper() + noun[1:]
    return template.format(noun=noun, noun2=noun2, Noun=capital, adj=adj)


def _n_sentences(rng: np.random.Generator, verbosity: float, base: float) -> int:
    return int(np.clip(round(rng.lognormal(math.log(base * verbosity), 0.7)), 1, 60))


def _sentences(
    rng: np.random.Generator, lexicon: Lexicon, nouns: Sequence[str], count: int
) -> list[str]:
    pool = lexicon.sentences
    sizes = [len(pool), len(nouns), len(nouns), len(EN_ADJECTIVES)]
    # One draw per batch, not per word: this loop dominates the run time.
    picks = rng.integers(0, sizes, size=(count, 4)).tolist()
    return [
        _fill(pool[t], nouns[a], nouns[b], EN_ADJECTIVES[c]) for t, a, b, c in picks
    ]


def _layout(
    rng: np.random.Generator, lexicon: Lexicon, sentences: list[str], markdown: bool
) -> str:
    """Arrange sentences as paragraphs, or as markdown with a header and a list."""
    join = lexicon.sentence_joiner
    if not markdown or len(sentences) < 3:
        blocks = [join.join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
        if len(blocks) > 1 and rng.random() < 0.15:
            blocks[-1] = f"**{blocks[-1]}**"
        return "\n\n".join(blocks)
    blocks = []
    if rng.random() < 0.6:
        blocks.append(f"## {_pick(rng, lexicon.headers)}")
    blocks.append(sentences[0])
    numbered = rng.random() < 0.4
    items = [
        (f"{k}. " if numbered else "- ") + (f"**{s}**" if rng.random() < 0.2 else s)
        for k, s in enumerate(sentences[1:-1], start=1)
    ]
    blocks.append("\n".join(items))
    blocks.append(sentences[-1])
    return "\n\n".join(blocks)


def _code_answer(
    rng: np.random.Generator,
    task: str,
    fname: str,
    lang: str,
    verbosity: float,
    markdown: bool,
) -> str:
    count = _n_sentences(rng, verbosity, 3.0)
    sentences = [_pick(rng, CODE_SENTENCES).format(task=task) for _ in range(count)]
    intro = sentences[0]
    rest = _layout(rng, LEXICONS["en"], sentences[1:], markdown) if count > 1 else ""
    if rng.random() < 0.15:
        return "\n\n".join(part for part in (intro, rest) if part)
    code = CODE_SNIPPETS[lang].replace("{fname}", fname)
    block = f"```{lang.lower()}\n{code}\n```"
    return "\n\n".join(part for part in (intro, block, rest) if part)


@dataclass
class _Draft:
    source: str
    model_a: int
    model_b: int
    prompt: list[object]
    responses: list[list[object]]
    refusal: list[bool]


@dataclass(frozen=True)
class _Battle:
    """What the turns of one battle are drawn from."""

    rng: np.random.Generator
    source: _Source
    lexicon: Lexicon
    nouns: Sequence[str]
    coding: bool
    task: str
    fname: str
    code_lang: str
    n_turns: int


# --------------------------------------------------------------- plain turns
def _prompt_turn(battle: _Battle, turn: int) -> str:
    rng = battle.rng
    if turn == 0 and battle.coding:
        return _pick(rng, CODE_PROMPTS).format(lang=battle.code_lang, task=battle.task)
    templates = battle.lexicon.prompts if turn == 0 else battle.lexicon.follow_ups
    noun, noun2 = _pick(rng, battle.nouns), _pick(rng, battle.nouns)
    return _fill(_pick(rng, templates), noun, noun2, "simple")


def _response_turn(battle: _Battle, verbosity: float, markdown: bool) -> str:
    rng = battle.rng
    if battle.coding:
        return _code_answer(
            rng, battle.task, battle.fname, battle.code_lang, verbosity, markdown
        )
    count = _n_sentences(rng, verbosity, 6.0)
    sentences = _sentences(rng, battle.lexicon, battle.nouns, count)
    return _layout(rng, battle.lexicon, sentences, markdown)


def _refusal(battle: _Battle) -> str:
    rng, lexicon = battle.rng, battle.lexicon
    text = _fill(_pick(rng, lexicon.refusals), _pick(rng, battle.nouns), "", "")
    if rng.random() < 0.3:
        text += lexicon.sentence_joiner + _sentences(rng, lexicon, battle.nouns, 1)[0]
    return text


# -------------------------------------------------------------------- quirks
def _one_turn(rng: np.random.Generator) -> int:
    return 1


def _two_or_three_turns(rng: np.random.Generator) -> int:
    return 2 + int(rng.random() < 0.3)


def _greeting(battle: _Battle, turn: int) -> str:
    return _pick(battle.rng, GREETINGS)


def _greeting_reply(battle: _Battle, verbosity: float, markdown: bool) -> str:
    rng = battle.rng
    count = _n_sentences(rng, verbosity, 1.0) - 1
    extra = _sentences(rng, battle.lexicon, battle.nouns, count)
    return " ".join([_pick(rng, GREETING_REPLIES), *extra])


def _null_turns(battle: _Battle, turns: list[object]) -> list[object]:
    return [None] * battle.n_turns


def _empty_turns(battle: _Battle, turns: list[object]) -> list[object]:
    return [""] * battle.n_turns


def _whitespace_turns(battle: _Battle, turns: list[object]) -> list[object]:
    return [_pick(battle.rng, WHITESPACE) for _ in range(battle.n_turns)]


def _null_last_turn(battle: _Battle, turns: list[object]) -> list[object]:
    turns[-1] = None
    return turns


def _copy_response_a(battle: _Battle, draft: _Draft) -> None:
    draft.responses[1], draft.refusal[1] = list(draft.responses[0]), draft.refusal[0]


def _add_emoji(battle: _Battle, draft: _Draft) -> None:
    rng = battle.rng
    target = [draft.prompt, *draft.responses][int(rng.integers(3))]
    turn = int(rng.integers(len(target)))
    emoji = "".join(_pick(rng, EMOJI) for _ in range(1 + int(rng.integers(3))))
    target[turn] = (
        f"{target[turn]} {emoji}" if rng.random() < 0.7 else f"{emoji} {target[turn]}"
    )


def _add_lone_surrogate(battle: _Battle, draft: _Draft) -> None:
    rng = battle.rng
    turns = draft.responses[int(rng.integers(2))]
    text = str(turns[-1])
    cut = int(rng.integers(len(text) + 1))
    turns[-1] = text[:cut] + "\ud83d" + text[cut:]


def _prepend_long_log(battle: _Battle, draft: _Draft) -> None:
    draft.prompt[0] = _long_log(battle.rng) + "\n\n" + str(draft.prompt[0])


def _repeat_to_long_response(battle: _Battle, draft: _Draft) -> None:
    sentence = _sentences(battle.rng, battle.lexicon, battle.nouns, 1)[0]
    # Measure the JSON text: non-ASCII letters take six characters there.
    repeats = _LONG_FIELD_CHARS // len(json.dumps(sentence)) + 1
    draft.responses[0][-1] = " ".join([sentence] * repeats)


def _add_non_string_turn(rng: np.random.Generator, turns: list[object]) -> None:
    odd: list[object] = [42, 3.5, ["step one", "step two"], [1, 2, 3]]
    turns[int(rng.integers(len(turns)))] = odd[int(rng.integers(len(odd)))]


def _drop_or_add_turn(rng: np.random.Generator, turns: list[object]) -> None:
    if len(turns) > 1:
        del turns[int(rng.integers(len(turns)))]
    else:
        turns.append(_pick(rng, LEXICONS["en"].follow_ups).format(noun2="that"))


def _break_json(rng: np.random.Generator, fields: list[str], occurrence: int) -> None:
    # Alternate the two kinds so that both appear in small tables too.
    broken = int(rng.integers(3))
    fields[broken] = _broken_json(rng, fields[broken], occurrence % 2 == 0)


@dataclass(frozen=True)
class _Quirk:
    """A quirk of the real file, as the steps of making a battle that it changes.

    A hook left at None keeps its step as for a plain battle. The steps run in
    the order of the fields, every row drawing the same random numbers for the
    steps it shares with a plain battle, so a seed always gives the same table.
    """

    rate: float | None = None
    """Share of rows; None: one row from `LONG_FIELD_MIN_ROWS` rows on."""
    language: str | None = None
    """Language of the battle, in place of the drawn one."""
    n_turns: Callable[[np.random.Generator], int] | None = None
    prompt_turn: Callable[[_Battle, int], str] | None = None
    """``(battle, turn index) -> text``, in place of :func:`_prompt_turn`."""
    response_turn: Callable[[_Battle, float, bool], str] | None = None
    """``(battle, verbosity, markdown) -> text``, in place of :func:`_response_turn`."""
    edit_side: Callable[[_Battle, list[object]], list[object]] | None = None
    """New turns of one response (no longer a refusal)."""
    both_sides: bool = False
    """Apply `edit_side` to both responses, not to one drawn side."""
    edit_battle: Callable[[_Battle, _Draft], None] | None = None
    """Change the drafted battle in place."""
    corrupt_turns: Callable[[np.random.Generator, list[object]], None] | None = None
    """Break the turns of one drawn response after labelling, in place."""
    corrupt_fields: Callable[[np.random.Generator, list[str], int], None] | None = None
    """Break the JSON texts ``[prompt, response_a, response_b]`` in place; gets
    how many earlier rows had this quirk."""


_NO_QUIRK = _Quirk()
# Rows are given to the quirks in this order (see `_quirk_plan`).
_QUIRKS: dict[str, _Quirk] = {
    "null_turn": _Quirk(0.004, n_turns=_two_or_three_turns, edit_side=_null_last_turn),
    "null_response": _Quirk(0.004, n_turns=_one_turn, edit_side=_null_turns),
    "both_null": _Quirk(
        0.001, n_turns=_one_turn, edit_side=_null_turns, both_sides=True
    ),
    "empty_response": _Quirk(0.004, edit_side=_empty_turns),
    "both_empty": _Quirk(0.001, edit_side=_empty_turns, both_sides=True),
    "whitespace_response": _Quirk(0.003, edit_side=_whitespace_turns),
    "identical_responses": _Quirk(0.02, edit_battle=_copy_response_a),
    "greeting_prompt": _Quirk(
        0.015,
        language="en",
        n_turns=_one_turn,
        prompt_turn=_greeting,
        response_turn=_greeting_reply,
    ),
    "emoji": _Quirk(0.03, edit_battle=_add_emoji),
    "lone_surrogate": _Quirk(0.002, edit_battle=_add_lone_surrogate),
    "invalid_json": _Quirk(0.0035, corrupt_fields=_break_json),
    "non_string_turn": _Quirk(0.002, corrupt_turns=_add_non_string_turn),
    "turn_mismatch": _Quirk(0.003, corrupt_turns=_drop_or_add_turn),
    "long_prompt": _Quirk(edit_battle=_prepend_long_log),
    "long_response": _Quirk(edit_battle=_repeat_to_long_response),
}

QUIRK_RATES: dict[str, float] = {
    name: quirk.rate for name, quirk in _QUIRKS.items() if quirk.rate is not None
}
"""Share of rows of each quirk, by name (see the module docstring)."""


def _quirk(name: str | None) -> _Quirk:
    return _NO_QUIRK if name is None else _QUIRKS[name]


# ------------------------------------------------------------------ battles
def _draft_battle(rng: np.random.Generator, quirk: _Quirk) -> _Draft:
    names = list(_SOURCES)
    weights = np.array([_SOURCES[name].weight for name in names])
    source_name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    source = _SOURCES[source_name]
    languages, shares = zip(*source.languages, strict=True)
    language = languages[int(rng.choice(len(languages), p=np.array(shares)))]
    language = quirk.language or language
    model_a, model_b = (int(k) for k in rng.choice(len(_MODELS), size=2, replace=False))
    if quirk.n_turns is not None:
        n_turns = quirk.n_turns(rng)
    else:
        n_turns = int(rng.choice(3, p=[0.87, 0.09, 0.04])) + 1
    coding = language == "en" and rng.random() < source.code_share
    lexicon = LEXICONS[language]
    if language == "en":
        nouns: Sequence[str] = EN_TOPICS[int(rng.integers(len(EN_TOPICS)))]
    else:
        nouns = lexicon.nouns
    task, fname = CODE_TASKS[int(rng.integers(len(CODE_TASKS)))]
    code_lang = _pick(rng, tuple(CODE_SNIPPETS))
    battle = _Battle(
        rng, source, lexicon, nouns, coding, task, fname, code_lang, n_turns
    )

    prompt_turn = quirk.prompt_turn or _prompt_turn
    prompt: list[object] = [prompt_turn(battle, turn) for turn in range(n_turns)]
    response_turn = quirk.response_turn or _response_turn
    responses: list[list[object]] = []
    refusal: list[bool] = []
    quirk_side = int(rng.integers(2))
    for side, model in enumerate((model_a, model_b)):
        verbosity = _MODELS[model][2]
        turns: list[object] = []
        for _ in range(n_turns):
            markdown = rng.random() < source.markdown_rate
            turns.append(response_turn(battle, verbosity, markdown))
        refused = rng.random() < source.refusal_rate
        if refused:
            turns[-1] = _refusal(battle)
        if quirk.edit_side is not None and (quirk.both_sides or side == quirk_side):
            turns, refused = quirk.edit_side(battle, turns), False
        responses.append(turns)
        refusal.append(refused)

    draft = _Draft(source_name, model_a, model_b, prompt, responses, refusal)
    if quirk.edit_battle is not None:
        quirk.edit_battle(battle, draft)
    return draft


def _long_log(rng: np.random.Generator) -> str:
    """A pasted server log, the usual reason for a prompt past the csv field limit."""
    lines: list[str] = []
    size = 0
    while size < _LONG_FIELD_CHARS:
        line = (
            f"2024-05-{int(rng.integers(1, 29)):02d} {int(rng.integers(24)):02d}:"
            f"{int(rng.integers(60)):02d}:{int(rng.integers(60)):02d} INFO worker-"
            f"{int(rng.integers(16))} processed batch {int(rng.integers(10**6))} in "
            f"{rng.random():.2f} s"
        )
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _side_features(turns: Sequence[object]) -> tuple[int, bool, bool]:
    texts = [turn for turn in turns if isinstance(turn, str)]
    chars = sum(len(text) for text in texts)
    markdown = any(_MARKDOWN_PATTERN.search(text) for text in texts)
    empty = not any(text.strip() for text in texts)
    return chars, markdown, empty


def _draw_labels(
    rng: np.random.Generator,
    drafts: Sequence[_Draft],
    model: _LabelModel = _LABEL_MODEL,
) -> np.ndarray:
    """Draw A/B/tie (0/1/2) from the latent score of each side."""
    n_rows = len(drafts)
    scores = np.zeros((n_rows, 2))
    for row, draft in enumerate(drafts):
        for side, model_index in enumerate((draft.model_a, draft.model_b)):
            chars, markdown, empty = _side_features(draft.responses[side])
            scores[row, side] = (
                model.log_length * math.log1p(chars)
                + model.markdown * markdown
                + model.refusal * draft.refusal[side]
                + model.empty * empty
                + _MODELS[model_index][1]
            )
    scores += rng.normal(0.0, model.noise_sd, size=(n_rows, 2))
    diff = scores[:, 0] - scores[:, 1] + model.position_bias
    peak = np.array([_SOURCES[draft.source].tie_peak for draft in drafts])
    p_tie = model.tie_floor + (peak - model.tie_floor) * np.exp(
        -np.abs(diff) / model.tie_scale
    )
    p_a = (1.0 - p_tie) / (1.0 + np.exp(-diff))
    identical = np.array([draft.responses[0] == draft.responses[1] for draft in drafts])
    p_tie = np.where(identical, model.identical_tie, p_tie)
    p_a = np.where(identical, (1.0 - model.identical_tie) * 0.53, p_a)
    uniform = rng.random(n_rows)
    return np.where(uniform < p_a, 0, np.where(uniform < 1.0 - p_tie, 1, 2))


def _broken_json(rng: np.random.Generator, field: str, truncate: bool) -> str:
    """A field that is not a JSON list: truncated, or plain text."""
    if truncate:
        return field[: int(rng.integers(2, max(3, len(field) - 1)))]
    nouns = EN_TOPICS[int(rng.integers(len(EN_TOPICS)))]
    return " ".join(_sentences(rng, LEXICONS["en"], nouns, 1 + int(rng.integers(3))))


def _quirk_plan(rng: np.random.Generator, n_rows: int) -> list[str | None]:
    """Assign each quirk to its own rows, disjoint from the other quirks."""
    plan: list[str | None] = [None] * n_rows
    order = iter(rng.permutation(n_rows).tolist())
    wanted = [
        (name, max(round(rate * n_rows), min(3, n_rows // 300)))
        for name, rate in QUIRK_RATES.items()
    ]
    if n_rows >= LONG_FIELD_MIN_ROWS:
        wanted += [(name, 1) for name, quirk in _QUIRKS.items() if quirk.rate is None]
    for name, count in wanted:
        for _ in range(count):
            row = next(order, None)
            if row is None:
                return plan
            plan[row] = name
    return plan


def _json_fields(
    rng: np.random.Generator, drafts: Sequence[_Draft], plan: Sequence[str | None]
) -> dict[str, list[str]]:
    """The prompt and responses as JSON texts, after the quirks that break them."""
    fields: dict[str, list[str]] = {"prompt": [], "response_a": [], "response_b": []}
    seen: Counter[str] = Counter()
    for draft, name in zip(drafts, plan, strict=True):
        quirk = _quirk(name)
        # Every row draws its side, quirk or not, so the draws stay in step.
        side_turns = draft.responses[int(rng.integers(2))]
        if quirk.corrupt_turns is not None:
            quirk.corrupt_turns(rng, side_turns)
        texts = [json.dumps(turns) for turns in (draft.prompt, *draft.responses)]
        if name is not None and quirk.corrupt_fields is not None:
            quirk.corrupt_fields(rng, texts, seen[name])
            seen[name] += 1
        for key, text in zip(fields, texts, strict=True):
            fields[key].append(text)
    return fields


def _unique_ids(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    ids = np.empty(0, dtype=np.int64)
    while ids.size < n_rows:
        draw = rng.integers(30_000, 2**32, size=n_rows - ids.size + 8)
        ids = np.unique(np.concatenate([ids, draw]))
    return np.sort(rng.choice(ids, size=n_rows, replace=False))


def make_demo_battles(
    n_rows: int = 3000, seed: int = 0, *, progress: bool = False
) -> pd.DataFrame:
    """Generate synthetic battles in the Kaggle train layout, with its quirks.

    The labels follow planted effects (longer answers, markdown, refusals, empty
    answers, position bias, ties between close answers), so a model on simple
    text features learns something real. See the module docstring for the
    effects and quirk rates.

    Parameters
    ----------
    n_rows : int, default=3000
        Number of battles. Must be >= 1.
    seed : int, default=0
        Seed of the ``numpy.random.Generator``; the same seed gives the same table.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        Columns ``id, model_a, model_b, prompt, response_a, response_b,
        winner_model_a, winner_model_b, winner_tie, source``.

    Raises
    ------
    TypeError
        If ``n_rows`` or ``seed`` is not an integer.
    ValueError
        If ``n_rows`` < 1 or ``seed`` < 0.

    Examples
    --------
    >>> battles = make_demo_battles(n_rows=20, seed=1)
    >>> list(battles.columns[:3])
    ['id', 'model_a', 'model_b']
    >>> json.loads(battles.loc[0, "prompt"])
    ['Write a short poem about the immune system.']
    >>> make_demo_battles(n_rows=20, seed=1).equals(battles)
    True
    """
    for name, value in (("n_rows", n_rows), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"make_demo_battles: {name} must be an integer. Got {value!r}."
            )
    if n_rows < 1:
        raise ValueError(f"make_demo_battles: n_rows must be >= 1. Got {n_rows!r}.")
    if seed < 0:
        raise ValueError(f"make_demo_battles: seed must be >= 0. Got {seed!r}.")
    rng = np.random.default_rng(seed)
    plan = _quirk_plan(rng, n_rows)
    drafts = [
        _draft_battle(rng, _quirk(name))
        for name in tqdm(plan, desc="demo battles", unit="row", disable=not progress)
    ]
    labels = _draw_labels(rng, drafts)
    fields = _json_fields(rng, drafts, plan)
    one_hot = np.eye(3, dtype=np.int64)[labels]
    return pd.DataFrame(
        {
            "id": _unique_ids(rng, n_rows),
            "model_a": [_MODELS[draft.model_a][0] for draft in drafts],
            "model_b": [_MODELS[draft.model_b][0] for draft in drafts],
            **fields,
            "winner_model_a": one_hot[:, 0],
            "winner_model_b": one_hot[:, 1],
            "winner_tie": one_hot[:, 2],
            "source": [draft.source for draft in drafts],
        },
        columns=list(COLUMNS),
    )


def write_demo_data(out: str | Path, n_rows: int = 3000, seed: int = 0) -> Path:
    """Generate the demo battles and write them to ``out`` as CSV, atomically.

    Returns the path written. The same ``n_rows`` and ``seed`` give the same
    file.
    """
    out = Path(out)
    write_csv_atomic(make_demo_battles(n_rows, seed), out)
    return out


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.make_demo_data",
        description=(
            "Write synthetic chatbot battles in the Kaggle 'LMSYS Chatbot Arena' "
            "train.csv layout (plus a 'source' column), with the real file's quirks "
            "and planted effects a model can learn. The same seed gives the same "
            "file; missing parent directories of --out are created and the file is "
            "replaced atomically."
        ),
    )
    parser.add_argument(
        "--out", metavar="PATH", type=Path, required=True, help="CSV file to write."
    )
    parser.add_argument(
        "--n-rows",
        metavar="N",
        type=int,
        default=3000,
        help="rows to write (default: 3000).",
    )
    parser.add_argument(
        "--seed", metavar="S", type=int, default=0, help="random seed (default: 0)."
    )
    parser.add_argument(
        "--test-layout",
        action="store_true",
        help="write the Kaggle test layout (id, prompt, response_a, response_b): "
        "no labels, model names or source.",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "--verbose", action="store_true", help="log progress and show a progress bar."
    )
    loudness.add_argument(
        "--quiet", action="store_true", help="log warnings and errors only."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: generate battles, write the CSV, print a summary.

    Parameters
    ----------
    argv : sequence of str or None, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO
    if args.verbose:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.n_rows < 1:
        parser.error(f"--n-rows must be >= 1. Got {args.n_rows}.")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0. Got {args.seed}.")
    started = time.perf_counter()
    battles = make_demo_battles(args.n_rows, args.seed, progress=args.verbose)
    logger.info(
        "make_demo_data: %s rows generated in %.1f s",
        f"{len(battles):,}",
        time.perf_counter() - started,
    )
    shares = battles[list(TARGET_COLUMNS)].mean()
    if args.test_layout:
        battles = battles[["id", "prompt", "response_a", "response_b"]]
    write_csv_atomic(battles, args.out)
    print(
        f"wrote {len(battles):,} rows (A {shares['winner_model_a']:.1%}, "
        f"B {shares['winner_model_b']:.1%}, tie {shares['winner_tie']:.1%}) "
        f"to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
