"""Read battles from any supported source into the canonical battle table.

The canonical table is a :class:`pandas.DataFrame` with one row per battle:

- ``id`` (str), unique;
- ``prompt``, ``response_a``, ``response_b``: lists of turn strings, never None;
- ``label`` (int, optional): 0 = A wins, 1 = B wins, 2 = tie, in :data:`CLASSES` order;
- ``weight`` (float, optional) and any pass-through columns such as ``source``.

Every repair made on the way in is counted in a :class:`RepairReport`, so
nothing is changed or dropped silently. Validation and repairs live here and
only here; feature blocks can rely on clean lists of strings.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.battle_files import LAYOUT_COLUMNS, read_table
from features.errors import BattleFormatError

__all__ = [
    "CLASSES",
    "LABEL_NAMES",
    "SWAP_LABELS",
    "TEXT_COLUMNS",
    "TIE",
    "BattleFormatError",
    "RepairReport",
    "as_battles",
    "battles_from_kaggle",
    "battles_from_arena_conversations",
    "battles_from_preference_pairs",
    "read_battles",
    "repair_report",
    "REPAIR_KINDS",
    "battle_fingerprint",
    "battle_ids",
    "labels_from_onehot",
    "parse_turns",
    "labels_to_onehot",
    "swap",
    "truncate_battles",
]

CLASSES: tuple[str, str, str] = ("winner_model_a", "winner_model_b", "winner_tie")
"""Target columns of the Kaggle layout, in the order of predicted probabilities."""

TIE = 2
"""Label of a tie, and its column in probabilities (0 = A won, 1 = B won)."""

SWAP_LABELS: np.ndarray = np.array([1, 0, 2])
"""Label ``k`` becomes ``SWAP_LABELS[k]`` when A and B are exchanged (ties stay).

The same permutation reorders probability columns:
``p(swap(x)) == p(x)[:, SWAP_LABELS]`` for a swap-symmetric model. Read-only.
"""
SWAP_LABELS.flags.writeable = False

LABEL_NAMES: tuple[str, str, str] = ("A", "B", "tie")
TEXT_COLUMNS: tuple[str, str, str] = ("prompt", "response_a", "response_b")
LONG_FIELD_CHARS = 131_072  # Python's default csv field limit; longer fields exist
_MAX_ROWS_IN_MESSAGE = 5
_ARENA_WINNERS = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}
_SURROGATE = re.compile("[\ud800-\udfff]")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


@dataclass
class RepairReport:
    """Counts of every repair applied while reading battles.

    Attributes
    ----------
    n_rows : int
        Rows read.
    counts : collections.Counter
        Repair kind -> number of fields (or rows) repaired.
    examples : dict
        Repair kind -> up to five battle ids showing it.

    Examples
    --------
    >>> report = RepairReport()
    >>> report.add("null_turn", "x1")
    >>> report.counts["null_turn"]
    1
    """

    n_rows: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, battle_id: str, n: int = 1) -> None:
        """Count ``n`` repairs of ``kind`` seen in battle ``battle_id``."""
        self.counts[kind] += n
        shown = self.examples.setdefault(kind, [])
        if len(shown) < _MAX_ROWS_IN_MESSAGE and battle_id not in shown:
            shown.append(battle_id)

    @property
    def n_repairs(self) -> int:
        """Total number of repairs of every kind."""
        return int(sum(self.counts.values()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RepairReport:
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(
            n_rows=int(data.get("n_rows", 0)),
            counts=Counter(data.get("counts", {})),
            examples={k: list(v) for k, v in data.get("examples", {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for run reports)."""
        return {
            "n_rows": self.n_rows,
            "n_repairs": self.n_repairs,
            "counts": dict(sorted(self.counts.items())),
            "examples": {k: self.examples[k] for k in sorted(self.examples)},
        }

    def __str__(self) -> str:
        lines = [f"read {self.n_rows:,} battles, {self.n_repairs:,} repairs"]
        for kind, count in sorted(self.counts.items()):
            ids = ", ".join(self.examples.get(kind, []))
            lines.append(f"  {kind:<24} {count:>7,}   e.g. {ids}")
        return "\n".join(lines)


REPAIR_KINDS: dict[str, str] = {
    "null_turn": "a turn was JSON null; replaced by an empty string",
    "null_field": "a whole field was missing/NaN; read as one empty turn",
    "non_string_turn": "a turn was a number/object; replaced by its JSON text",
    "invalid_json": "field was not a JSON list; kept as one raw-text turn",
    "surrogates_joined": "UTF-16 surrogate pairs in decoded text were joined",
    "lone_surrogate": "lone UTF-16 surrogates replaced by U+FFFD",
    "empty_response": "response with no visible text (kept; flagged by features)",
    "long_field": f"field over {LONG_FIELD_CHARS:,} chars (kept in full)",
    "turn_count_mismatch": "prompt and response turn counts differ (kept as is)",
    "plain_pair_text": "chosen/rejected without Human:/Assistant: markers; one turn",
}
"""What each repair kind means; the README lists the same table."""


def _fix_surrogates(text: str, battle_id: str, report: RepairReport) -> str:
    # Surrogates are not ASCII; the isascii scan is ~10x faster than the regex.
    if text.isascii() or not _SURROGATE.search(text):
        return text
    raw = text.encode("utf-16-le", "surrogatepass")
    fixed = raw.decode("utf-16-le", "replace")
    lone = fixed.count("\ufffd") - text.count("\ufffd")
    report.add("lone_surrogate" if lone else "surrogates_joined", battle_id)
    return fixed


def _turn_to_text(turn: Any, battle_id: str, report: RepairReport) -> str:
    if isinstance(turn, str):
        return _fix_surrogates(turn, battle_id, report)
    if turn is None:
        report.add("null_turn", battle_id)
        return ""
    report.add("non_string_turn", battle_id)
    try:
        text = json.dumps(turn, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        # Circular, too deep, or an int too long to print: keep only its type.
        text = f"<{type(turn).__name__}>"
    return _fix_surrogates(text, battle_id, report)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, float) and math.isnan(value)


def parse_turns(
    value: Any, battle_id: str, column: str, report: RepairReport
) -> list[str]:
    """Turn one field (JSON text, list, or scalar) into a list of turn strings.

    Repairs are counted in ``report``: JSON ``null`` turns become ``""``,
    non-string turns their JSON text, invalid JSON one raw-text turn, and
    broken UTF-16 surrogates are joined or replaced.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if _is_missing(value):
        report.add("null_field", battle_id)
        return [""]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            # ValueError covers JSONDecodeError and numbers too long to convert.
            report.add("invalid_json", battle_id)
            return [_fix_surrogates(text, battle_id, report)]
        if not isinstance(value, list):
            report.add("invalid_json", battle_id)
            return [_fix_surrogates(text, battle_id, report)]
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        return [_turn_to_text(value, battle_id, report)]
    if not value:
        return [""]
    return [_turn_to_text(turn, battle_id, report) for turn in value]


def _row_names(frame: pd.DataFrame, mask: np.ndarray) -> str:
    positions = np.flatnonzero(mask)
    shown = [
        f"{frame['id'].iloc[i]!r} (row {i})" for i in positions[:_MAX_ROWS_IN_MESSAGE]
    ]
    more = len(positions) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _check_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BattleFormatError(
            f"{what} is missing column(s) {missing}; found {list(frame.columns)}. "
            f"Rename the columns or pick the matching reader."
        )


def _check_unique_ids(frame: pd.DataFrame) -> None:
    duplicated = frame["id"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise BattleFormatError(
            f"duplicate battle ids: {_row_names(frame, duplicated)}. "
            "Each battle needs its own value in column 'id'; deduplicate the source."
        )


def _id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def battle_ids(ids: Iterable[Any]) -> pd.Series:
    """Battle ids as text, as the canonical table and a submission hold them.

    Kaggle ids are integers, but pandas holds a numeric column as float when a
    value is missing. An integral float id is therefore written as an integer
    (``2299425``, not ``2299425.0``); every other id is its ``str`` (text ids
    stay exactly as given; CSV files are handled when read, see
    :func:`features.battle_files.read_table`).

    Parameters
    ----------
    ids : iterable
        One id per battle (a column of any dtype).

    Returns
    -------
    pandas.Series
        The ids as ``str`` (object dtype), index kept for a Series.

    Raises
    ------
    BattleFormatError
        An id is missing, or holds a lone UTF-16 surrogate (names the rows).

    Examples
    --------
    >>> battle_ids([2299425.0, 12.5]).tolist()
    ['2299425', '12.5']
    >>> battle_ids(["x91", 31]).tolist()
    ['x91', '31']
    """
    ids = ids if isinstance(ids, pd.Series) else pd.Series(list(ids), dtype=object)
    missing = ids.isna().to_numpy()
    if missing.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(missing)[:_MAX_ROWS_IN_MESSAGE])
        raise BattleFormatError(f"column 'id' is empty in row(s) {rows}. Give ids.")
    strings = [_id_text(value) for value in ids.tolist()]
    # An id is copied to the submission as is: refuse what UTF-8 cannot hold.
    broken = np.array([bool(_SURROGATE.search(text)) for text in strings], dtype=bool)
    if broken.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(broken)[:_MAX_ROWS_IN_MESSAGE])
        raise BattleFormatError(
            f"column 'id' holds a lone UTF-16 surrogate (not valid text) in row(s) "
            f"{rows}. Give those battles ids that are valid UTF-8 text."
        )
    return pd.Series(strings, index=ids.index, dtype=object, name=ids.name)


def labels_from_onehot(frame: pd.DataFrame) -> np.ndarray:
    """Integer labels (0 = A, 1 = B, 2 = tie) from the one-hot target columns.

    Raises
    ------
    BattleFormatError
        When a row is not exactly one-hot (names the rows).
    """
    targets = frame[list(CLASSES)].apply(pd.to_numeric, errors="coerce")
    values = targets.to_numpy(dtype=float)
    valid = np.isin(values, (0.0, 1.0)).all(axis=1) & (values.sum(axis=1) == 1)
    if not valid.all():
        raise BattleFormatError(
            f"labels are not one-hot in {_row_names(frame, ~valid)}: each of "
            f"{list(CLASSES)} must be 0 or 1 with exactly one 1. "
            "Fix the targets or read the file as unlabelled (test) data."
        )
    return values.argmax(axis=1).astype(np.int64)


def labels_to_onehot(labels: Iterable[int]) -> np.ndarray:
    """One-hot (n, 3) float array from integer labels.

    >>> labels_to_onehot([0, 2]).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    labels = np.asarray(list(labels), dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 2):
        raise BattleFormatError(
            f"labels must be 0, 1 or 2 (A, B, tie). Got values {np.unique(labels)}."
        )
    onehot = np.zeros((labels.size, len(CLASSES)))
    onehot[np.arange(labels.size), labels] = 1.0
    return onehot


def _finish(
    frame: pd.DataFrame,
    report: RepairReport,
    text_columns: Sequence[str] = TEXT_COLUMNS,
) -> pd.DataFrame:
    """Parse text fields, count repairs and return the canonical table."""
    out = frame.copy()
    out["id"] = battle_ids(out["id"])
    _check_unique_ids(out)
    ids = out["id"].tolist()
    for column in text_columns:
        out[column] = [
            parse_turns(value, battle_id, column, report)
            for value, battle_id in zip(out[column].tolist(), ids, strict=True)
        ]
    for battle_id, prompt, resp_a, resp_b in zip(
        ids, out["prompt"], out["response_a"], out["response_b"], strict=True
    ):
        for turns in (prompt, resp_a, resp_b):
            n_long = sum(len(t) > LONG_FIELD_CHARS for t in turns)
            if n_long:
                report.add("long_field", battle_id, n_long)
        for turns in (resp_a, resp_b):
            if not any(t.strip() for t in turns):
                report.add("empty_response", battle_id)
        if not len(prompt) == len(resp_a) == len(resp_b):
            report.add("turn_count_mismatch", battle_id)
    report.n_rows = len(out)
    out = out.reset_index(drop=True)
    out.attrs["repair_report"] = report.to_dict()
    return out


def battles_from_kaggle(
    frame: pd.DataFrame, *, labelled: bool | None = None
) -> pd.DataFrame:
    """Canonical table from a DataFrame in the Kaggle layout (JSON-list strings).

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``id, prompt, response_a, response_b`` and, for training, the
        one-hot targets in :data:`CLASSES`. Other columns pass through.
    labelled : bool or None, default=None
        Require targets (True), ignore them (False), or use them when present.

    Returns
    -------
    pandas.DataFrame
        The canonical table; :func:`repair_report` gives what was repaired.
    """
    _check_columns(frame, ("id", *TEXT_COLUMNS), "battle table")
    has_targets = all(c in frame.columns for c in CLASSES)
    if labelled and not has_targets:
        _check_columns(frame, CLASSES, "labelled battle table")
    out = frame.copy()
    if has_targets and labelled is not False:
        out["id"] = battle_ids(out["id"])
        out["label"] = labels_from_onehot(out)
    out = out.drop(columns=[c for c in CLASSES if c in out.columns])
    return _finish(out, RepairReport())


def _arena_turns(conversation: Any, battle_id: str, column: str) -> tuple[list, list]:
    if isinstance(conversation, str):
        try:
            conversation = json.loads(conversation)
        except json.JSONDecodeError as err:
            raise BattleFormatError(
                f"battle {battle_id!r}: {column} is not valid JSON ({err.msg}). "
                "Expected a list of {role, content} messages."
            ) from err
    if isinstance(conversation, np.ndarray):
        conversation = conversation.tolist()
    if not isinstance(conversation, list):
        raise BattleFormatError(
            f"battle {battle_id!r}: {column} must be a list of {{role, content}} "
            f"messages, got {type(conversation).__name__}."
        )
    user, assistant = [], []
    for message in conversation:
        if not isinstance(message, Mapping) or "role" not in message:
            raise BattleFormatError(
                f"battle {battle_id!r}: {column} holds a message without a 'role' "
                f"({message!r:.80}). Expected {{role, content}} messages."
            )
        role = message["role"]
        target = user if role in ("user", "human") else assistant
        target.append(message.get("content"))
    return user, assistant


def battles_from_arena_conversations(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical table from Chatbot Arena conversation dumps.

    Expects ``conversation_a``/``conversation_b`` (lists of ``{role, content}``)
    and optionally ``winner`` in ``model_a | model_b | tie | tie (bothbad)``;
    "both bad" is merged into tie as in the Kaggle data. The prompt is taken
    from the user turns of ``conversation_a``.
    """
    _check_columns(frame, ("conversation_a", "conversation_b"), "arena dump")
    out = frame.copy()
    if "id" not in out.columns:
        out["id"] = out.get("question_id", pd.Series(range(len(out)))).astype(str)
    out["id"] = battle_ids(out["id"])
    prompts, resp_a, resp_b = [], [], []
    for battle_id, conv_a, conv_b in zip(
        out["id"], out["conversation_a"], out["conversation_b"], strict=True
    ):
        user_a, assistant_a = _arena_turns(conv_a, battle_id, "conversation_a")
        _, assistant_b = _arena_turns(conv_b, battle_id, "conversation_b")
        prompts.append(user_a)
        resp_a.append(assistant_a)
        resp_b.append(assistant_b)
    out["prompt"], out["response_a"], out["response_b"] = prompts, resp_a, resp_b
    if "winner" in out.columns:
        winners = out["winner"].astype(str).str.strip()
        known = winners.isin(list(_ARENA_WINNERS)).to_numpy()
        if not known.all():
            raise BattleFormatError(
                f"unknown 'winner' value in {_row_names(out, ~known)}: expected one "
                f"of {list(_ARENA_WINNERS)}. Fix or drop those rows."
            )
        out["label"] = winners.map(_ARENA_WINNERS).astype(np.int64)
    out = out.drop(
        columns=["conversation_a", "conversation_b", "winner"], errors="ignore"
    )
    return _finish(out, RepairReport())


def _split_dialogue(text: str) -> tuple[list[str], list[str]]:
    """Human and assistant turns of an HH-style ``\\n\\nHuman: … Assistant: …``."""
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n") if text else "")
    human, assistant = [], []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        (human if role == "Human" else assistant).append(content.strip())
    return human, assistant


def battles_from_preference_pairs(
    frame: pd.DataFrame, *, seed: int = 0
) -> pd.DataFrame:
    """Canonical table from chosen/rejected dialogue pairs (HH-RLHF style).

    Both dialogues share the prompt turns; the chosen one is put on side A or
    B at random (seeded, per row id) so that position carries no signal.
    """
    _check_columns(frame, ("chosen", "rejected"), "preference-pair table")
    out = frame.copy()
    if "id" not in out.columns:
        out["id"] = [f"pair-{i}" for i in range(len(out))]
    out["id"] = battle_ids(out["id"])
    report = RepairReport()
    rng = np.random.default_rng(seed)
    chosen_is_b = rng.random(len(out)) < 0.5
    prompts, resp_a, resp_b = [], [], []
    given_prompts = out["prompt"] if "prompt" in out.columns else [None] * len(out)
    for battle_id, chosen, rejected, given_prompt, flip in zip(
        out["id"],
        out["chosen"].fillna(""),
        out["rejected"].fillna(""),
        given_prompts,
        chosen_is_b,
        strict=True,
    ):
        human, chosen_turns = _split_dialogue(str(chosen))
        _, rejected_turns = _split_dialogue(str(rejected))
        if not chosen_turns and not rejected_turns:
            # Plain answers without Human:/Assistant: markers: one turn each.
            report.add("plain_pair_text", battle_id)
            chosen_turns, rejected_turns = [str(chosen)], [str(rejected)]
        if given_prompt is not None and not human:
            human = [given_prompt]
        prompts.append(human or [""])
        first, second = (
            (rejected_turns, chosen_turns) if flip else (chosen_turns, rejected_turns)
        )
        resp_a.append(first or [""])
        resp_b.append(second or [""])
    out["prompt"], out["response_a"], out["response_b"] = prompts, resp_a, resp_b
    out["label"] = chosen_is_b.astype(np.int64)
    out = out.drop(columns=["chosen", "rejected"])
    return _finish(out, report)


def read_battles(
    source: str | Path | pd.DataFrame, *, labelled: bool | None = None
) -> pd.DataFrame:
    """Read battles from a file or DataFrame of any supported layout.

    The layout is recognised by its columns: Kaggle (``prompt``,
    ``response_a``, ``response_b``), arena dumps (``conversation_a/b``),
    preference pairs (``chosen``/``rejected``). Files may be CSV (also
    ``.csv.gz``), parquet, JSON Lines, a JSON list, or a zip archive holding
    one of them (see :func:`features.battle_files.read_table`).

    Parameters
    ----------
    source : path or pandas.DataFrame
        The battles. ``archive.zip::member.csv`` reads one member of an
        archive; a plain ``archive.zip`` must hold exactly one battle file.
    labelled : bool or None, default=None
        Require labels (True), ignore them (False), or use them when present.

    Returns
    -------
    pandas.DataFrame
        The canonical battle table; :func:`repair_report` gives the
        :class:`RepairReport` of what was repaired.

    Raises
    ------
    BattleFormatError
        Unknown layout, missing columns, labels not one-hot, duplicate ids,
        a file that is not UTF-8.
    DataFileError
        A file that cannot be read as a table: unknown suffix, empty, not
        comma-separated, refused by its parser, or an archive without exactly
        one battle file (the message lists the members).
    FileNotFoundError
        ``source`` is a path that does not exist.
    """
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        frame = read_table(source)
        frame.attrs.clear()  # metadata stored in a file is not a validation
    columns = set(frame.columns)
    if set(LAYOUT_COLUMNS["arena"]) <= columns:
        battles = battles_from_arena_conversations(frame)
    elif set(LAYOUT_COLUMNS["pairs"]) <= columns:
        battles = battles_from_preference_pairs(frame)
    elif "label" in columns and set(LAYOUT_COLUMNS["kaggle"]) <= columns:
        battles = as_battles(frame)
    else:
        battles = battles_from_kaggle(frame, labelled=labelled)
    if labelled and "label" not in battles.columns:
        raise BattleFormatError(
            f"no labels found; columns are {list(frame.columns)}. Training needs "
            f"{list(CLASSES)} (Kaggle), 'winner' (arena) or chosen/rejected pairs."
        )
    return battles


def as_battles(battles: Any) -> pd.DataFrame:
    """Canonical table from any form the public API accepts.

    Accepts a DataFrame in the Kaggle layout (JSON strings) or the canonical
    layout (lists of turns, optional ``label``), a list of dicts, or a dict
    of columns. Every form is validated (cheap for a table that is already
    canonical: it has nothing to repair).
    """
    if isinstance(battles, pd.DataFrame):
        frame = battles
    elif isinstance(battles, Mapping):
        frame = pd.DataFrame(dict(battles))
    elif isinstance(battles, Sequence) and not isinstance(battles, str | bytes):
        if battles and not all(isinstance(row, Mapping) for row in battles):
            raise TypeError(
                "battles given as a list must be a list of dicts with keys "
                f"'id', 'prompt', 'response_a', 'response_b'; got an element of "
                f"type {type(battles[0]).__name__}."
            )
        frame = pd.DataFrame(list(battles))
    else:
        raise TypeError(
            "battles must be a pandas DataFrame, a list of dicts or a dict of "
            f"columns; got {type(battles).__name__}."
        )
    _check_columns(frame, ("id", *TEXT_COLUMNS), "battle table")
    if "label" in frame.columns:
        out = frame.copy()
        out["id"] = battle_ids(out["id"])
        labels = pd.to_numeric(out["label"], errors="coerce")
        bad = ~labels.isin([0, 1, 2]).to_numpy()
        if bad.any():
            raise BattleFormatError(
                f"column 'label' must be 0 (A), 1 (B) or 2 (tie); bad value in "
                f"{_row_names(out, bad)}."
            )
        out["label"] = labels.astype(np.int64)
        return _finish(out, RepairReport())
    return battles_from_kaggle(frame)


def repair_report(battles: pd.DataFrame) -> RepairReport:
    """The :class:`RepairReport` of a table made by this module's readers."""
    return RepairReport.from_dict(battles.attrs.get("repair_report", {}))


def swap(battles: pd.DataFrame) -> pd.DataFrame:
    """Exchange responses A and B (and labels 0 <-> 1); ties stay ties.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"id": ["1"], "prompt": [["q"]], "response_a": [["a"]],
    ...                   "response_b": [["b"]], "label": [0]})
    >>> swapped = swap(t)
    >>> swapped.loc[0, "response_a"], int(swapped.loc[0, "label"])
    (['b'], 1)
    """
    out = battles.copy()
    out["response_a"], out["response_b"] = battles["response_b"], battles["response_a"]
    if "label" in out.columns:
        out["label"] = SWAP_LABELS[battles["label"].to_numpy(dtype=np.int64)]
    return out


def truncate_battles(battles: pd.DataFrame, max_chars: int | None) -> pd.DataFrame:
    """Keep at most ``max_chars`` characters per field, cutting from the start.

    The last turn matters most to voters, so older turns go first and a long
    turn keeps its end. Applied identically in training and prediction so
    that a 5 MB answer costs bounded memory and time.
    """
    if max_chars is None:
        return battles
    out = battles.copy()
    for column in TEXT_COLUMNS:
        out[column] = [_truncate_turns(turns, max_chars) for turns in battles[column]]
    return out


def _truncate_turns(turns: list[str], max_chars: int) -> list[str]:
    total = sum(len(t) for t in turns)
    if total <= max_chars:
        return turns
    kept: list[str] = []
    budget = max_chars
    for turn in reversed(turns):
        if budget <= 0:
            kept.append("")
            continue
        kept.append(turn[-budget:] if len(turn) > budget else turn)
        budget -= len(kept[-1])
    return kept[::-1]


def battle_fingerprint(battles: pd.DataFrame) -> str:
    """sha256 of the battles' ids and texts (labels excluded), for cache keys."""
    digest = hashlib.sha256()
    for row in zip(battles["id"], *(battles[c] for c in TEXT_COLUMNS), strict=True):
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8", "replace"))
    return digest.hexdigest()
