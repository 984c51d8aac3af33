"""Tests of the style block: markdown counts, readability, swap consistency, speed."""

from __future__ import annotations

import doctest
import sys
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import features.blocks.style as style_module
from features.battles import read_battles
from features.blocks import make_block
from features.blocks.style import (
    COUNT_FEATURES,
    OPENERS,
    READABILITY_SCORES,
    StyleBlock,
    fast_syllables,
    markdown_counts,
)
from features.errors import InvalidParameterError

_MARKDOWN = """# Title

Intro with **bold**, __also bold__, *italic* and _italic too_, `inline code`.

## Section

1. first
2) second
- dash item
* star item
+ plus item

```python
# not a header
- not an item
**not bold**
```

> a quote

---

| a | b |
|---|---|
| 1 | 2 |

See [the docs](https://example.com/docs) or https://example.org now! Why?
Math $x^2$ and $$\\int_0^1 x\\,dx$$ and \\(a_1\\) and \\[E = mc^2\\] 🎉🚀
"""


def _battles(response_a, response_b) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(len(response_a))],
            "prompt": [["q"]] * len(response_a),
            "response_a": response_a,
            "response_b": response_b,
        }
    )


def _row(matrix, i: int = 0) -> dict[str, float]:
    return dict(zip(matrix.columns, matrix.values[i].tolist(), strict=True))


def test_style_module_doctests_pass():
    result = doctest.testmod(style_module)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("h1", 1),
        ("h2", 1),
        ("h3", 0),
        ("headers", 2),
        ("ordered_items", 2),
        ("unordered_items", 3),
        ("list_items", 5),
        ("bold", 2),
        ("italics", 2),
        ("code_blocks", 1),
        ("code_lines", 3),
        ("inline_code", 1),
        ("table_rows", 3),
        ("links", 1),
        ("urls", 2),
        ("latex", 4),
        ("emoji", 2),
        ("blockquotes", 1),
        ("hrules", 1),
        ("paragraphs", 8),
        ("exclamations", 1),
        ("questions", 1),
    ],
)
def test_markdown_counts_match_a_hand_written_document(feature, expected):
    assert markdown_counts(_MARKDOWN)[feature] == expected


def test_markdown_counts_every_documented_feature():
    assert set(markdown_counts(_MARKDOWN)) == set(COUNT_FEATURES)


def test_markdown_inside_a_code_block_is_not_counted():
    text = "```\n# not a header\n- not an item\n**not bold** $x$\n```"
    counts = markdown_counts(text)
    assert counts["code_blocks"] == 1
    assert counts["headers"] == counts["list_items"] == 0
    assert counts["bold"] == counts["latex"] == 0


def test_an_unclosed_code_fence_runs_to_the_end():
    counts = markdown_counts("Intro\n\n```python\n# comment\nx = 1\n")
    assert counts["code_blocks"] == 1
    assert counts["code_lines"] == 2
    assert counts["headers"] == 0


def test_tilde_fences_and_inline_code_hide_markdown():
    counts = markdown_counts("~~~\n# x\n~~~\nuse `**kwargs` here")
    assert counts["code_blocks"] == 1
    assert counts["inline_code"] == 1
    assert counts["headers"] == counts["bold"] == 0


@pytest.mark.parametrize(
    ("text", "bold", "italics"),
    [
        ("**bold** and *it*", 1, 1),
        ("my_var_name and snake_case_words", 0, 0),
        ("2*3*4 = 24 and a * b * c", 0, 0),
        ("fill in: \\_\\_\\_ and \\*not\\*", 0, 0),
        ("***bold italic***", 1, 0),
        ("** not bold ** and * not italic *", 0, 0),
    ],
)
def test_emphasis_counts_ignore_arithmetic_identifiers_and_escapes(text, bold, italics):
    counts = markdown_counts(text)
    assert (counts["bold"], counts["italics"]) == (bold, italics)


def test_a_horizontal_rule_is_not_a_list_item():
    counts = markdown_counts("- - -\n***\n___\n- item")
    assert counts["hrules"] == 3
    assert counts["unordered_items"] == 1


@pytest.mark.parametrize(
    ("text", "latex"),
    [
        ("It costs $5 and $10 today.", 0),
        ("Dear \\[Your Name\\], regards \\[Company\\]", 0),
        ("\\[https://x.y/a_b=c\\]", 0),
        ("Inline \\(x^2\\) and display \\[\\frac{a}{b}\\]", 2),
        ("\\begin{align} x \\end{align}", 1),
        ("$x$ and $$y = 1$$", 2),
    ],
)
def test_latex_counts_maths_but_not_prices_or_escaped_brackets(text, latex):
    assert markdown_counts(text)["latex"] == latex


def test_fast_syllables_count_common_words():
    expected = {"the": 1, "cat": 1, "make": 1, "table": 2, "water": 2, "little": 2}
    expected |= {"beautiful": 3, "interesting": 4, "readability": 5, "a": 1, "b": 1}
    assert {word: fast_syllables(word) for word in expected} == expected


def test_style_columns_have_counts_then_rates_scores_and_flags():
    matrix = StyleBlock().transform(_battles([["x"]], [["y"]]))
    columns = matrix.columns
    for name in COUNT_FEATURES:
        assert f"d_style_{name}_norm" in columns
    for name in READABILITY_SCORES:
        assert f"a_style_{name}" in columns
        assert f"d_style_{name}_norm" not in columns
    for name in OPENERS:
        assert f"b_style_opener_{name}" in columns
    assert "a_style_readability_na" in columns
    assert "a_style_headers_per1k" in columns
    assert "a_style_h1_per1k" not in columns
    assert len(columns) == len(set(columns)) == 217
    assert matrix.values.dtype == np.float32


def test_style_without_readability_drops_only_the_readability_columns():
    battles = _battles([["Some text here."]], [["Other text here."]])
    full = StyleBlock().transform(battles)
    lean = StyleBlock(readability="none").transform(battles)
    dropped = set(full.columns) - set(lean.columns)
    assert {c.split("_", 2)[2] for c in dropped} == {
        *READABILITY_SCORES,
        "readability_na",
    }
    assert set(lean.columns) < set(full.columns)


def test_simple_text_reads_easier_than_dense_text():
    simple = "The cat sat. The dog ran. We had fun. It was a good day."
    dense = (
        "Notwithstanding considerable methodological heterogeneity, comprehensive "
        "epidemiological investigations consistently demonstrate substantial "
        "associations between socioeconomic deprivation and cardiovascular mortality."
    )
    row = _row(StyleBlock().transform(_battles([[simple]], [[dense]])))
    assert row["a_style_readability_na"] == row["b_style_readability_na"] == 0.0
    assert row["a_style_flesch"] > 80 > 0 > row["b_style_flesch"]
    for score in ("fog", "smog", "ari"):
        assert row[f"a_style_{score}"] < row[f"b_style_{score}"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n ",
        "北京是中国的首都，有很多名胜古迹。",
        "Москва — столица России.",
        "ok",
    ],
    ids=["empty", "whitespace", "chinese", "russian", "one-word"],
)
def test_readability_is_zero_and_flagged_when_not_applicable(text):
    row = _row(StyleBlock().transform(_battles([[text]], [["x"]])))
    assert row["a_style_readability_na"] == 1.0
    assert all(row[f"a_style_{score}"] == 0.0 for score in READABILITY_SCORES)


def test_readability_reads_only_the_end_of_long_texts():
    ending = "This is the end of the answer. It is short and plain. " * 20
    long_text = "Incomprehensibly multisyllabic verbiage. " * 500 + ending
    block = StyleBlock(readability_max_chars=len(ending))
    rows = [
        _row(block.transform(_battles([[t]], [["x"]]))) for t in (ending, long_text)
    ]
    for score in READABILITY_SCORES:
        assert rows[0][f"a_style_{score}"] == pytest.approx(rows[1][f"a_style_{score}"])


def test_readability_skips_code_blocks():
    prose = "The cat sat on the mat. It was warm."
    code = "\n\n```\nsupercalifragilistic_expialidocious_configuration()\n```"
    rows = [
        _row(StyleBlock().transform(_battles([[t]], [["x"]])))
        for t in (prose, prose + code)
    ]
    assert rows[0]["a_style_flesch"] == rows[1]["a_style_flesch"]


def test_lexical_ratios_match_hand_computed_values():
    text = "the the the cat 123 ABC!"
    row = _row(StyleBlock().transform(_battles([[text]], [["x"]])))
    assert row["a_style_ttr"] == pytest.approx(4 / 6)
    assert row["a_style_digit_ratio"] == pytest.approx(3 / 19)
    assert row["a_style_punct_ratio"] == pytest.approx(1 / 19)
    assert row["a_style_upper_ratio"] == pytest.approx(3 / 15)
    assert row["a_style_mean_word_len"] == pytest.approx(18 / 6)


def test_windowed_type_token_ratio_reads_the_last_words():
    text = " ".join(f"w{i}" for i in range(50)) + " same" * 20
    row = _row(StyleBlock(ttr_window=20).transform(_battles([[text]], [["x"]])))
    assert row["a_style_ttr_window"] == pytest.approx(1 / 20)
    assert row["a_style_ttr"] == pytest.approx(51 / 70)


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("Certainly! Here is the list.", "opener_certainly"),
        ("**Sure**, here you go.", "opener_sure"),
        ("  Of course. Let me explain.", "opener_of_course"),
        ("Absolutely, that works.", "opener_absolutely"),
        ("Great question! It depends.", "opener_great_question"),
        ("Hello! How can I help?", "opener_greeting"),
        ("As an AI language model, I cannot.", "opener_as_an_ai"),
        ("Done. Let me know if you need more.", "closer_let_me_know"),
        ("Here it is. I hope this helps!", "closer_hope_helps"),
    ],
)
def test_openers_and_closers_are_flagged(text, flag):
    row = _row(StyleBlock().transform(_battles([[text]], [["x"]])))
    flags = {
        c[len("a_style_") :]
        for c, v in row.items()
        if c.startswith(("a_style_opener_", "a_style_closer_")) and v == 1.0
    }
    assert flags == {flag}


def test_openers_read_the_last_turn_and_need_a_whole_word():
    battles = _battles([["Sure, first.", "Surely not."]], [["Hi", "Certainly!"]])
    row = _row(StyleBlock().transform(battles))
    assert row["a_style_opener_sure"] == 0.0
    assert row["b_style_opener_certainly"] == 1.0
    assert row["b_style_opener_greeting"] == 0.0


def test_style_block_is_swap_consistent_on_hand_battles(hand_battles, swap_check):
    swap_check(StyleBlock().fit(hand_battles), hand_battles)


@pytest.mark.realdata
def test_style_block_is_swap_consistent_on_the_corpus(corpus_path, swap_check):
    battles = read_battles(corpus_path).iloc[:300].reset_index(drop=True)
    swap_check(StyleBlock().fit(battles), battles)


_EDGE_TEXTS = {
    "empty": "",
    "whitespace": " \n\t " * 10,
    "chinese": "北京是中国的首都，有很多名胜古迹。" * 50,
    "100k-prose": "The quick brown fox jumps over the lazy dog. " * 2300,
    "100k-one-line": "word " * 20_000,
    "unclosed-math": "\\[" * 30_000,
    "unclosed-links": "[a](" * 30_000,
    "unclosed-bold": "**a " * 30_000,
    "dollars": "$x" * 50_000,
    "fences": "```\n" * 30_000,
    "pipes": "|a\n" * 30_000,
    "emoji": "😀" * 50_000,
    "every-char": "".join(chr(i) for i in range(32, 0xD800)) * 2,
}


@pytest.mark.parametrize("text", _EDGE_TEXTS.values(), ids=_EDGE_TEXTS.keys())
def test_style_output_is_finite_and_fast_on_edge_texts(text):
    battles = _battles([[text]], [["short answer"]])
    start = time.process_time()
    matrix = StyleBlock().transform(battles)
    assert time.process_time() - start < 20.0  # a hang guard, not a speed target
    assert matrix.values.dtype == np.float32
    assert np.isfinite(matrix.values).all()


def test_style_rejects_an_unknown_readability_backend(hand_battles):
    with pytest.raises(
        InvalidParameterError,
        match=r"'readability' parameter of StyleBlock must be one of 'fast', "
        r"'textstat', 'none'\. Got 'flesch'\.",
    ):
        StyleBlock(readability="flesch").fit(hand_battles)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"readability_max_chars": 50},
            r"'readability_max_chars' parameter of StyleBlock must be an int in "
            r"\[100, inf\)\. Got 50\.",
        ),
        (
            {"ttr_window": 5},
            r"'ttr_window' parameter of StyleBlock must be an int in \[10, inf\)",
        ),
        ({"ttr_window": 20.5}, r"'ttr_window' parameter of StyleBlock .* Got 20\.5"),
        ({"readability_max_chars": True}, r"must be an int in \[100, inf\)\. Got True"),
    ],
)
def test_style_rejects_out_of_range_params(hand_battles, params, message):
    with pytest.raises(InvalidParameterError, match=message):
        StyleBlock(**params).transform(hand_battles)


def test_style_rejects_battles_without_response_columns(hand_battles):
    with pytest.raises(ValueError, match=r"needs columns \['response_b'\]"):
        StyleBlock().fit(hand_battles.drop(columns="response_b"))


def test_textstat_readability_without_cmudict_fails_with_a_hint(
    hand_battles, monkeypatch
):
    nltk = pytest.importorskip("nltk")

    def _missing(resource):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", _missing)
    with pytest.raises(LookupError, match="nltk.downloader cmudict, or use"):
        StyleBlock(readability="textstat").fit(hand_battles)


def test_textstat_readability_without_textstat_fails_with_an_install_hint(
    hand_battles, monkeypatch
):
    monkeypatch.setitem(sys.modules, "textstat", None)
    with pytest.raises(ImportError, match=r"needs the 'textstat' package; install"):
        StyleBlock(readability="textstat").transform(hand_battles)


def test_textstat_readability_agrees_with_the_fast_formulas(monkeypatch):
    nltk = pytest.importorskip("nltk")
    pytest.importorskip("textstat")
    try:
        nltk.data.find("corpora/cmudict")
    except LookupError:
        # Offline: let textstat fall back to its pyphen syllables instead of
        # downloading cmudict (a private hook; skip if textstat moved it).
        counts = pytest.importorskip("textstat.backend.counts._count_syllables")
        if not hasattr(counts, "get_cmudict"):
            pytest.skip("textstat internals changed; cannot run it offline")
        monkeypatch.setattr(counts, "get_cmudict", lambda lang: {})
        monkeypatch.setattr(nltk.data, "find", lambda resource: resource)
    simple = "The cat sat on the mat. It was a warm and sunny day. We played outside."
    dense = (
        "Notwithstanding considerable methodological heterogeneity, comprehensive "
        "epidemiological investigations consistently demonstrate associations."
    )
    battles = _battles([[simple]], [[dense]])
    fast = _row(StyleBlock().transform(battles))
    slow = _row(StyleBlock(readability="textstat").transform(battles))
    assert slow["a_style_readability_na"] == slow["b_style_readability_na"] == 0.0
    for side in ("a", "b"):
        assert slow[f"{side}_style_fog"] == pytest.approx(
            fast[f"{side}_style_fog"], rel=0.25
        )
        assert slow[f"{side}_style_ari"] == pytest.approx(
            fast[f"{side}_style_ari"], abs=2.0
        )
    assert slow["a_style_flesch"] > 80 > 0 > slow["b_style_flesch"]


def test_style_block_clones_with_equal_params():
    block = StyleBlock(readability="none", readability_max_chars=500, ttr_window=50)
    copy = clone(block)
    assert copy is not block
    assert copy.get_params() == block.get_params()
    assert copy.set_params(ttr_window=30).ttr_window == 30


def test_style_fit_returns_self_and_transform_needs_no_fit(hand_battles):
    block = StyleBlock()
    unfitted = block.transform(hand_battles)
    assert block.fit(hand_battles) is block
    np.testing.assert_array_equal(block.transform(hand_battles).values, unfitted.values)


def test_style_state_round_trip_transforms_identically(hand_battles):
    block = StyleBlock(ttr_window=20).fit(hand_battles)
    state, arrays = block.get_state()
    restored = StyleBlock(ttr_window=20).set_state(state, arrays)
    np.testing.assert_array_equal(
        restored.transform(hand_battles).values, block.transform(hand_battles).values
    )


def test_style_block_does_not_mutate_the_battles(hand_battles):
    before = hand_battles.copy(deep=True)
    StyleBlock().fit_transform(hand_battles)
    pd.testing.assert_frame_equal(hand_battles, before)


def test_style_block_is_registered_under_its_name():
    block = make_block("style", {"readability": "none"})
    assert isinstance(block, StyleBlock)
    assert block.name == "style"


@pytest.mark.realdata
@pytest.mark.slow
def test_list_answers_win_more_often_on_the_corpus(corpus_path):
    battles = read_battles(corpus_path)
    matrix = StyleBlock().transform(battles)
    assert np.isfinite(matrix.values).all()
    d_lists = matrix.values[:, matrix.columns.index("d_style_list_items")]
    labels = battles["label"].to_numpy()
    decided = (labels < 2) & (d_lists != 0)
    more_lists_won = np.sign(d_lists[decided]) == np.where(labels[decided] == 0, 1, -1)
    # Structured answers win more often (0.59 measured on 857 battles).
    assert decided.sum() > 300
    assert more_lists_won.mean() > 0.53
