"""Tie cues: what makes arena voters call a battle a tie.

Ties are about 30% of arena votes and come more often on easy or objective
prompts (a greeting, a sum, a short factual question: both models get it
right) and when the two answers are alike (same final number, same first
line, nearly the same words in nearly the same order, similar lengths). The
other blocks already give the prompt's length and turns (``lengths``),
identical and near-identical answers, both refusing and both blank
(``flags``) and word/character-set overlap (``similarity``); this block adds
only what they lack, all of it symmetric (``s_tie_*``) because a tie does
not depend on which answer is A.

Prompt kinds are told by short multilingual keyword patterns (English,
Chinese, Spanish, Russian, German, French) on the last prompt turn; they are
cues for the boosters, not a classifier.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from numbers import Integral
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.blocks.base import FeatureBlock, FeatureMatrix
from features.text import find_words, last_turns
from features.validation import Interval, ParameterTable

__all__ = ["PROMPT_KINDS", "TieCuesBlock", "final_number", "prompt_kinds"]

logger = logging.getLogger(__name__)

PROMPT_KINDS: tuple[str, ...] = ("greeting", "math", "code", "creative", "factual")
"""Prompt kinds flagged by :func:`prompt_kinds`, in column order."""

_GREETING = re.compile(
    r"^\W*(?:hi|hello|hey|heya|hiya|yo|sup|howdy|greetings|good (?:morning|afternoon|"
    r"evening|day)|how are you|how are you doing|what'?s up|hola|buenos d[ií]as|"
    r"привет|здравствуй(?:те)?|hallo|guten tag|moin|bonjour|salut|coucou|ciao|ol[áa]|"
    r"你好|您好|嗨|哈喽|こんにちは|안녕(?:하세요)?|test(?:ing)?)\b\W*"
    r"(?:there|everyone|all|bot|friend|buddy|mate|you)?\W*$",
    re.IGNORECASE,
)
_MATH = re.compile(
    r"\d\s*[-+*/×÷^=<>]\s*[\d(x]|\b(?:solve|calculate|compute|evaluate|simplify|"
    r"equation|integral|derivative|probability|how many|how much|sum of|product of|"
    r"percent(?:age)?|average|resuelve|calcula|ecuaci[oó]n|cu[aá]ntos?|реши(?:те)?|"
    r"вычисли(?:те)?|уравнени|сколько|berechne|gleichung|wie viele|calcule[rz]?|"
    r"[ée]quation|combien)|计算|方程|多少|求解|几个",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"```|\b(?:code|python|javascript|typescript|java|c\+\+|c#|rust|golang|sql|"
    r"regex|bash|shell script|html|css|function|script|api|json|compile|debug|"
    r"def|class|import|return|print|código|код|programm)\b|代码|程序|函数",
    re.IGNORECASE,
)
_CREATIVE = re.compile(
    r"\b(?:write|compose|create|generate|make up|invent)\b[^.?!\n]{0,40}\b(?:poem|"
    r"story|song|lyrics|essay|letter|joke|haiku|limerick|rap|script|tale|sonnet|"
    r"dialogue|speech|novel|slogan)s?\b|\b(?:imagine|pretend|role-?play|act as|"
    r"you are a|story about|poem about|escribe|écri[st]|schreibe?|напиши|сочини)\b"
    r"|写一|写首|写个|故事|诗",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^\W*(?:what|who|whom|when|where|which|whose|is|are|was|were|does|do|did|can|"
    r"qu[eé]|qui[eé]n|cu[aá]ndo|d[oó]nde|что|кто|когда|где|какой|was|wer|wann|wo|"
    r"welche[rs]?|qu'est|quel(?:le)?s?|quand|o[uù])\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w,])")


def prompt_kinds(prompt: str, *, short_words: int = 25) -> dict[str, bool]:
    """Kinds of one prompt (its last turn): greeting, math, code, creative, factual.

    ``factual`` is a short question (at most ``short_words`` words, ending in
    a question mark or opening with a question word) that is not math, code
    or creative writing: the objective, easy prompts that tie most.

    >>> prompt_kinds("hi!")["greeting"], prompt_kinds("What is 2+2?")["math"]
    (True, True)
    >>> prompt_kinds("Who wrote Hamlet?")["factual"]
    True
    """
    text = prompt.strip()
    kinds = {
        "greeting": bool(_GREETING.match(text)),
        "math": bool(_MATH.search(text)),
        "code": bool(_CODE.search(text)),
        "creative": bool(_CREATIVE.search(text)),
    }
    short = len(find_words(text)) <= short_words
    question = text.endswith(("?", "？")) or bool(_QUESTION_START.match(text))
    kinds["factual"] = (
        short and question and not (kinds["math"] or kinds["code"] or kinds["creative"])
    )
    return kinds


def final_number(text: str) -> float | None:
    """The last number written in ``text`` (commas as thousands), or None.

    >>> final_number("2 + 2 = 4. So the answer is 1,204.5"), final_number("no")
    (1204.5, None)
    """
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    return float(matches[-1].replace(",", ""))


def _edit_similarity(x: list[str], y: list[str]) -> float:
    """Order-aware word similarity 2M/T of difflib, made symmetric."""
    if not x and not y:
        return 1.0
    first, second = sorted((x, y), key=lambda words: (len(words), words))
    return difflib.SequenceMatcher(None, first, second, autojunk=False).ratio()


def _ratio(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """min/max of two non-negative counts; 1 when both are 0."""
    high = np.maximum(a, b)
    return np.where(high == 0, 1.0, np.minimum(a, b) / np.where(high == 0, 1, high))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.casefold().split())
    return ""


class TieCuesBlock(FeatureBlock):
    """Symmetric cues of a tie: easy/objective prompts, answers that agree.

    Stateless. Every column is symmetric (``s_tie_*``):

    - ``prompt_<kind>`` for each kind in :data:`PROMPT_KINDS` (0/1, see
      :func:`prompt_kinds`) and ``prompt_question`` (ends in a question
      mark), on the last prompt turn;
    - ``prompt_last_words``: words of the last prompt turn (``lengths``
      counts the whole conversation);
    - ``edit_similarity``: difflib's order-aware ratio of the two answers'
      words (last turns, casefolded, first ``max_words`` words), in [0, 1];
      1 for identical answers;
    - ``same_first_line``: the first non-blank lines are equal up to case
      and spaces;
    - ``both_numbers`` / ``same_final_number``: both answers contain a
      number / their last numbers are equal (the same result of a sum);
    - ``len_ratio_chars`` / ``len_ratio_words``: min/max of the two answers'
      lengths, 1 for equal lengths (``lengths`` gives the signed gaps).

    Parameters
    ----------
    max_words : int, default=400
        Words of each answer compared by ``edit_similarity`` (the start of
        the last turn), >= 1; bounds the quadratic cost.
    short_prompt_words : int, default=25
        Most words of a ``prompt_factual`` question, >= 1.

    Attributes
    ----------
    is_fitted_ : bool
        Set by ``fit``; the block also transforms without it.

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({"prompt": [["What is 6*7?"]],
    ...     "response_a": [["6*7 = 42"]], "response_b": [["The answer is 42."]]})
    >>> m = TieCuesBlock().transform(battles)
    >>> row = dict(zip(m.columns, m.values[0].tolist()))
    >>> row["s_tie_prompt_math"], row["s_tie_same_final_number"]
    (1.0, 1.0)
    """

    name: ClassVar[str] = "tie_cues"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = False

    _allowed_values: ClassVar[ParameterTable] = {
        "max_words": [Interval(Integral, 1, None)],
        "short_prompt_words": [Interval(Integral, 1, None)],
    }

    def __init__(self, *, max_words: int = 400, short_prompt_words: int = 25) -> None:
        self.max_words = max_words
        self.short_prompt_words = short_prompt_words

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Tie cues of each battle (float32, finite, all ``s_``).

        Raises
        ------
        InvalidParameterError
            A param outside its allowed values.
        ValueError
            A text column is missing.
        """
        self._validate(battles)
        start = time.perf_counter()
        prompts = last_turns(battles, "prompt")
        texts_a = last_turns(battles, "response_a")
        texts_b = last_turns(battles, "response_b")
        n = len(battles)
        names = [f"prompt_{kind}" for kind in PROMPT_KINDS] + [
            "prompt_question",
            "prompt_last_words",
            "edit_similarity",
            "same_first_line",
            "both_numbers",
            "same_final_number",
        ]
        out = {name: np.zeros(n) for name in names}
        chars = np.zeros((2, n))
        words = np.zeros((2, n))
        for i, (prompt, a, b) in enumerate(zip(prompts, texts_a, texts_b, strict=True)):
            for kind, flag in prompt_kinds(
                prompt, short_words=self.short_prompt_words
            ).items():
                out[f"prompt_{kind}"][i] = flag
            out["prompt_question"][i] = prompt.rstrip().endswith(("?", "？"))
            out["prompt_last_words"][i] = len(find_words(prompt))
            words_a, words_b = find_words(a.casefold()), find_words(b.casefold())
            out["edit_similarity"][i] = _edit_similarity(
                words_a[: self.max_words], words_b[: self.max_words]
            )
            line_a, line_b = _first_line(a), _first_line(b)
            out["same_first_line"][i] = bool(line_a) and line_a == line_b
            number_a, number_b = final_number(a), final_number(b)
            both = number_a is not None and number_b is not None
            out["both_numbers"][i] = both
            out["same_final_number"][i] = both and number_a == number_b
            chars[:, i] = len(a.strip()), len(b.strip())
            words[:, i] = len(words_a), len(words_b)
        out["len_ratio_chars"] = _ratio(chars[0], chars[1])
        out["len_ratio_words"] = _ratio(words[0], words[1])
        columns = tuple(f"s_tie_{name}" for name in out)
        values = np.column_stack(list(out.values())).astype(np.float32)
        logger.debug(
            "tie_cues: %d battles, %d columns, %.2f s",
            n,
            len(columns),
            time.perf_counter() - start,
        )
        return FeatureMatrix(values.reshape(n, len(columns)), columns)
