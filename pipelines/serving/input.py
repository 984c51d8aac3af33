"""Request bodies of ``POST /v1/predict``: checked here, canonicalised by features.

This module checks only the shape of the JSON (an object with a non-empty
``battles`` list of objects, each with an id and three text fields of an
accepted type, plus the optional ``class_prior`` and ``explain``). Everything
about the texts themselves (Kaggle JSON-list strings, null or non-string turns,
broken surrogates, duplicate ids) is left to :func:`features.battles.as_battles`,
the one reader of battles, so the service repairs and reports exactly as the
command-line tools do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.battles import TEXT_COLUMNS, as_battles, repair_report
from features.errors import BattleFormatError, UserInputError
from models.explain import CONCEPTS

__all__ = ["PredictRequest", "RequestError", "parse_predict_body"]

BODY_KEYS = ("battles", "class_prior", "explain")
"""Keys a request body may have; any other key is an error (a typo is not ignored)."""

_EXAMPLE = (
    '{"battles": [{"id": "1", "prompt": "Hi", "response_a": "Hello!", '
    '"response_b": "Hey."}]}'
)


class RequestError(BattleFormatError):
    """A request the service refuses, with its HTTP status and where it is wrong.

    Parameters
    ----------
    message : str
        What is wrong and what to send instead.
    status : int
        HTTP status of the response (400, 413 or 422).
    field : str or None
        The offending field, e.g. ``"battles[3].prompt"``.
    battle_index : int or None
        Position of the offending battle in ``battles``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        field: str | None = None,
        battle_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.battle_index = battle_index

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of the JSON response."""
        return {
            "status": self.status,
            "message": str(self),
            "field": self.field,
            "battle_index": self.battle_index,
        }


@dataclass(frozen=True)
class PredictRequest:
    """A checked request: canonical battles and the options that go with them.

    Attributes
    ----------
    battles : pandas.DataFrame
        The canonical battle table, in request order.
    repairs : dict
        :meth:`features.battles.RepairReport.to_dict` of what was repaired.
    class_prior : tuple of float or None
        Target class prior (A, B, tie), or None for the model's own.
    explain : int or None
        Number of top concepts to explain per battle.
    """

    battles: pd.DataFrame
    repairs: dict[str, Any]
    class_prior: tuple[float, float, float] | None
    explain: int | None


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _decode(body: bytes) -> Any:
    if not body.strip():
        raise RequestError(
            f"the request body is empty. Send a JSON object such as {_EXAMPLE}.",
            status=400,
            field="body",
        )
    try:
        return json.loads(body)
    except UnicodeDecodeError as err:
        raise RequestError(
            f"the request body is not UTF-8 text ({err.reason} at byte {err.start}). "
            "Send JSON encoded as UTF-8.",
            status=400,
            field="body",
        ) from err
    except json.JSONDecodeError as err:
        raise RequestError(
            f"the request body is not valid JSON: {err.msg} at line {err.lineno} "
            f"column {err.colno}. Send a JSON object such as {_EXAMPLE}.",
            status=400,
            field="body",
        ) from err
    except (ValueError, RecursionError) as err:
        # Numbers too long to convert, or nesting deeper than Python recurses.
        raise RequestError(
            f"the request body could not be read as JSON ({type(err).__name__}: "
            f"{str(err)[:200]}). Send a JSON object such as {_EXAMPLE}.",
            status=400,
            field="body",
        ) from err


def _text_field(value: Any, index: int, column: str) -> Any:
    """The field as features.battles reads it: a Kaggle string, turns or null.

    A string that opens with ``[`` is the Kaggle JSON-list text and goes to the
    reader as is (invalid JSON is repaired and reported there); any other
    string is one turn.
    """
    if isinstance(value, str):
        return value if value.lstrip().startswith("[") else [value]
    if isinstance(value, list) or value is None:
        return value
    raise RequestError(
        f"battles[{index}].{column} must be a string, a list of turn strings or the "
        f"Kaggle JSON-list string; got {_type_name(value)}. Send the text, e.g. "
        f'"{column}": "Hello" or ["turn 1", "turn 2"].',
        field=f"battles[{index}].{column}",
        battle_index=index,
    )


def _battle(value: Any, index: int) -> dict[str, Any]:
    where = f"battles[{index}]"
    if not isinstance(value, dict):
        raise RequestError(
            f"{where} must be an object with 'id', 'prompt', 'response_a' and "
            f"'response_b'; got {_type_name(value)}.",
            field=where,
            battle_index=index,
        )
    for key in ("id", *TEXT_COLUMNS):
        if key not in value:
            raise RequestError(
                f"{where} has no {key!r}; every battle needs 'id', 'prompt', "
                f"'response_a' and 'response_b' (it has {sorted(value)}).",
                field=f"{where}.{key}",
                battle_index=index,
            )
    battle_id = value["id"]
    if isinstance(battle_id, bool) or not isinstance(battle_id, str | int):
        raise RequestError(
            f"{where}.id must be a string or an integer; got "
            f"{_type_name(battle_id)}. Give each battle its own id.",
            field=f"{where}.id",
            battle_index=index,
        )
    record = {"id": str(battle_id)}
    for column in TEXT_COLUMNS:
        record[column] = _text_field(value[column], index, column)
    return record


def _class_prior(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    valid = (
        isinstance(value, list)
        and len(value) == 3
        and all(
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v > 0
            for v in value
        )
    )
    if not valid:
        raise RequestError(
            "class_prior must be a list of 3 positive numbers (A wins, B wins, tie), "
            f"e.g. [0.45, 0.45, 0.10]; got {json.dumps(value)[:80]}.",
            field="class_prior",
        )
    return (float(value[0]), float(value[1]), float(value[2]))


def _explain(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(
            "explain must be a positive integer k (the k strongest concepts per "
            f"battle); got {json.dumps(value)[:80]}.",
            field="explain",
        )
    if value > len(CONCEPTS):
        raise RequestError(
            f"explain asks for {value} concepts but explanations have at most "
            f"{len(CONCEPTS)} ({', '.join(CONCEPTS)}). Send explain <= "
            f"{len(CONCEPTS)}.",
            field="explain",
        )
    return value


def parse_predict_body(body: bytes, *, max_battles: int) -> PredictRequest:
    """Check a ``POST /v1/predict`` body and read its battles.

    Parameters
    ----------
    body : bytes
        The raw request body.
    max_battles : int
        Most battles one request may hold.

    Returns
    -------
    PredictRequest

    Raises
    ------
    RequestError
        Not JSON (400), too many battles (413), or a missing field, a wrong
        type, an empty list or unreadable battles (422); the message names
        the field and the battle index.

    Examples
    --------
    >>> battle = {"id": 7, "prompt": "Hi", "response_a": ["Hey"],
    ...           "response_b": '["Hello"]'}
    >>> body = json.dumps({"battles": [battle]}).encode()
    >>> request = parse_predict_body(body, max_battles=10)
    >>> request.battles.loc[0, ["id", "prompt", "response_b"]].tolist()
    ['7', ['Hi'], ['Hello']]
    """
    data = _decode(body)
    if not isinstance(data, dict):
        raise RequestError(
            f"the request body must be a JSON object; got {_type_name(data)}. Send "
            f"{_EXAMPLE}.",
            field="body",
        )
    unknown = sorted(set(data) - set(BODY_KEYS))
    if unknown:
        raise RequestError(
            f"unknown key(s) {unknown} in the request body; the keys are "
            f"{list(BODY_KEYS)}.",
            field=unknown[0],
        )
    if "battles" not in data:
        raise RequestError(
            f"the request body has no 'battles'. Send {_EXAMPLE}.", field="battles"
        )
    battles = data["battles"]
    if not isinstance(battles, list):
        raise RequestError(
            f"battles must be a list of battle objects; got {_type_name(battles)}.",
            field="battles",
        )
    if not battles:
        raise RequestError(
            "battles is an empty list; send at least one battle.", field="battles"
        )
    if len(battles) > max_battles:
        raise RequestError(
            f"battles holds {len(battles):,} battles, more than this server's limit "
            f"of {max_battles:,} per request (--max-batch). Split the request.",
            status=413,
            field="battles",
        )
    class_prior = _class_prior(data.get("class_prior"))
    explain = _explain(data.get("explain"))
    records = [_battle(value, index) for index, value in enumerate(battles)]
    try:
        table = as_battles(records)
    except (UserInputError, ValueError, TypeError) as err:
        raise RequestError(
            f"battles could not be read: {err}", field="battles"
        ) from err
    return PredictRequest(
        battles=table,
        repairs=repair_report(table).to_dict(),
        class_prior=class_prior,
        explain=explain,
    )
