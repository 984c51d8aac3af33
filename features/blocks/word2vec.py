"""Word2Vec features: pooled word vectors of each answer and their similarities.

Word vectors trained on the corpus itself (gensim, CBOW) place answers in a
small dense space where synonyms and paraphrases are close, which bag-of-n-gram
features cannot do. Each text is pooled two ways: the plain mean of its word
vectors and a TF-IDF-weighted mean (rare words count more; idf from the same
corpus). The block emits the cosine of each answer to the prompt, the cosine
between the answers, and the per-dimension difference A−B of the pooled
vectors (optionally the vectors themselves).

After ``fit`` only the vocabulary, the vectors and the idf weights are kept:
transform is a sparse count matrix times the vector table, with no gensim
object involved, and the state is plain JSON plus arrays.
"""

from __future__ import annotations

import logging
import time
import warnings
import zlib
from collections.abc import Sequence
from numbers import Integral
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from features.battles import truncate_battles
from features.blocks.base import FeatureBlock, FeatureMatrix
from features.text import (
    OUTPUTS,
    find_words,
    joined_texts,
    paired_matrix,
    side_outputs,
    symmetric_texts,
)
from features.validation import Interval, Options, ParameterTable, check_parameters

__all__ = ["Word2VecBlock", "tokenize"]

logger = logging.getLogger(__name__)

_MAX_SENTENCE = 10_000  # gensim silently drops words past this per sentence
_STATE_FORMAT = 1


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text``: ``\\w`` runs, each CJK character one word.

    >>> tokenize("Hello, World! 北京 café_2")
    ['hello', 'world', '北', '京', 'café_2']
    """
    return find_words(text.lower())


def _stable_hash(text: str) -> int:
    """Process-independent string hash (Python's ``hash`` is salted per run)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


class Word2VecBlock(FeatureBlock):
    """Pooled Word2Vec vectors of the answers, their A−B difference and cosines.

    Parameters
    ----------
    vector_size : int, default=64
        Dimension of the word vectors.
    window : int, default=5
        Context window (words on each side) of the CBOW training.
    min_count : int, default=2
        Words seen fewer times in the corpus get no vector.
    epochs : int, default=5
        Passes over the corpus.
    workers : int, default=1
        Training threads. Only 1 gives reproducible vectors: with more, the
        threads' update order varies between runs (a warning says so).
    seed : int, default=0
        Seed of the vector initialisation and negative sampling.
    max_vocab : int or None, default=100000
        Largest vocabulary kept (gensim's ``max_final_vocab``: ``min_count`` is
        raised until it fits), which bounds the state's memory. None: no cap.
    max_chars : int or None, default=20000
        Characters kept per field (prompt, answer); earlier turns and the start
        of a long turn are cut first. None keeps everything.
    output : {"diff", "sides", "both"}, default="diff"
        Which pooled-vector columns to emit next to the cosines:

        - ``"diff"``: ``d_w2v_mean_<i>`` and ``d_w2v_tfidf_<i>`` (A − B);
        - ``"sides"``: ``a_``/``b_`` pooled vectors of each answer;
        - ``"both"``: the per-answer vectors and their difference.

    Attributes
    ----------
    vocabulary_ : list of str
        The words with a vector, in row order of ``vectors_``.
    vectors_ : numpy.ndarray
        Shape (n_words, vector_size), float32.
    idf_ : numpy.ndarray
        Shape (n_words,), smoothed idf ``ln((1 + n) / (1 + df)) + 1`` over the
        corpus texts (prompts and answers).

    Notes
    -----
    Always emitted: ``a_/b_/d_w2v_cos_prompt`` and ``a_/b_/d_w2v_tfidf_cos_prompt``
    (answer to prompt, mean and weighted pooling), ``s_w2v_cos_ab`` and
    ``s_w2v_tfidf_cos_ab`` (answer to answer). A text without known words
    pools to the zero vector, whose cosines are 0.

    The fit is symmetric: it sees every battle's prompt and its two answers in
    a sorted order, so fitting on swapped battles gives identical vectors. With
    ``workers=1`` the vectors are identical across runs and processes (string
    hashing does not depend on ``PYTHONHASHSEED``). Training on 8k battles
    takes about 10-15 s of one core with the defaults.

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({
    ...     "id": ["1"], "prompt": [["say hi"]],
    ...     "response_a": [["hi hi there"]], "response_b": [["hi there"]]})
    >>> block = Word2VecBlock(vector_size=4, min_count=1).fit(battles)
    >>> block.vocabulary_
    ['hi', 'there', 'say']
    >>> block.transform(battles).values.shape
    (1, 16)
    """

    name: ClassVar[str] = "word2vec"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = True

    _allowed_values: ClassVar[ParameterTable] = {
        "vector_size": [Interval(Integral, 1, None)],
        "window": [Interval(Integral, 1, None)],
        "min_count": [Interval(Integral, 1, None)],
        "epochs": [Interval(Integral, 1, None)],
        "workers": [Interval(Integral, 1, None)],
        "seed": [Interval(Integral, 0, None)],
        "max_vocab": [Interval(Integral, 1, None), None],
        "max_chars": [Interval(Integral, 1, None), None],
        "output": [Options(OUTPUTS)],
    }

    def __init__(
        self,
        *,
        vector_size: int = 64,
        window: int = 5,
        min_count: int = 2,
        epochs: int = 5,
        workers: int = 1,
        seed: int = 0,
        max_vocab: int | None = 100_000,
        max_chars: int | None = 20000,
        output: Literal["diff", "sides", "both"] = "diff",
    ) -> None:
        self.vector_size = vector_size
        self.window = window
        self.min_count = min_count
        self.epochs = epochs
        self.workers = workers
        self.seed = seed
        self.max_vocab = max_vocab
        self.max_chars = max_chars
        self.output = output

    # --------------------------------------------------------------------- fit
    def fit(self, battles: pd.DataFrame) -> Word2VecBlock:
        """Train word vectors and idf weights on the prompts and both answers.

        Parameters
        ----------
        battles : pandas.DataFrame
            The canonical battle table.

        Returns
        -------
        Word2VecBlock
            ``self``, fitted.

        Raises
        ------
        InvalidParameterError
            A parameter outside its allowed values.
        ValueError
            No word reaches ``min_count``.
        """
        from gensim.models import Word2Vec  # heavy: only when training

        check_parameters(self)
        if self.workers > 1:
            warnings.warn(
                f"Word2VecBlock with workers={self.workers} trains non-"
                "deterministically, so features change from run to run. Set "
                "workers=1 for reproducible features.",
                UserWarning,
                stacklevel=2,
            )
        started = time.perf_counter()
        # Prompt, then the two answers in sorted order, battle by battle.
        texts = [
            text
            for triple in zip(*symmetric_texts(battles, self.max_chars), strict=True)
            for text in triple
        ]
        token_lists = [tokenize(text) for text in texts]
        sentences = [
            tokens[start : start + _MAX_SENTENCE]
            for tokens in token_lists
            for start in range(0, len(tokens), _MAX_SENTENCE)
        ]
        model = Word2Vec(
            vector_size=self.vector_size,
            window=self.window,
            min_count=self.min_count,
            max_final_vocab=self.max_vocab,
            workers=self.workers,
            seed=self.seed,
            epochs=self.epochs,
            hashfxn=_stable_hash,
        )
        if sentences:
            model.build_vocab(sentences)
        if len(model.wv) == 0:
            raise ValueError(
                f"Word2VecBlock found no word seen at least min_count="
                f"{self.min_count} times in {len(token_lists)} texts. Lower "
                "'min_count' or fit on more text."
            )
        model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
        vocabulary = [str(word) for word in model.wv.index_to_key]
        vectors = np.array(model.wv.vectors, dtype=np.float32)
        counts = _count_matrix(token_lists, {w: i for i, w in enumerate(vocabulary)})
        doc_freq = np.bincount(counts.indices, minlength=len(vocabulary))
        idf = np.log((1.0 + len(token_lists)) / (1.0 + doc_freq)) + 1.0
        self._build(vocabulary, vectors, idf)
        logger.info(
            "word2vec: %s words x %d dims from %s tokens, %.1f s",
            f"{len(vocabulary):,}",
            self.vector_size,
            f"{sum(map(len, token_lists)):,}",
            time.perf_counter() - started,
        )
        return self

    def _build(self, vocabulary: list[str], vectors: NDArray, idf: NDArray) -> None:
        self.vocabulary_ = vocabulary
        self.vectors_ = vectors
        self.idf_ = idf
        self._index = {word: i for i, word in enumerate(vocabulary)}
        # float64 copy for pooling, made once: copying it per call cost more
        # than the pooling itself on small batches (34k words: 17 MB).
        self._vectors64 = vectors.astype(np.float64)
        self.is_fitted_ = True

    # --------------------------------------------------------------- transform
    def _pooled(self, texts: list[str]) -> tuple[NDArray, NDArray]:
        """Mean and idf-weighted mean word vector of every text (float64)."""
        counts = _count_matrix([tokenize(t) for t in texts], self._index)
        weighted = counts.copy()
        weighted.data *= self.idf_[weighted.indices]
        pooled = []
        for matrix in (counts, weighted):
            total = np.asarray(matrix.sum(axis=1)).ravel()
            sums = np.asarray(matrix @ self._vectors64)
            pooled.append(sums / np.where(total > 0, total, 1.0)[:, np.newaxis])
        return pooled[0], pooled[1]

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Pool each text's word vectors and emit cosines and A−B differences.

        Returns
        -------
        FeatureMatrix
            Dense float32 values.

        Raises
        ------
        RuntimeError
            The block is not fitted.
        InvalidParameterError
            A parameter outside its allowed values.
        ValueError
            ``vector_size`` changed since fit.
        """
        self._check_fitted()
        check_parameters(self)
        if self.vectors_.shape[1] != self.vector_size:
            raise ValueError(
                f"Word2VecBlock was fitted with vector_size="
                f"{self.vectors_.shape[1]} but has vector_size={self.vector_size} "
                "now; fit again."
            )
        cut = truncate_battles(battles, self.max_chars)
        prompt = self._pooled(joined_texts(cut, "prompt"))
        side_a = self._pooled(joined_texts(cut, "response_a"))
        side_b = self._pooled(joined_texts(cut, "response_b"))
        cosines = paired_matrix(
            "w2v_",
            {
                "cos_prompt": _cosine(side_a[0], prompt[0]),
                "tfidf_cos_prompt": _cosine(side_a[1], prompt[1]),
            },
            {
                "cos_prompt": _cosine(side_b[0], prompt[0]),
                "tfidf_cos_prompt": _cosine(side_b[1], prompt[1]),
            },
            symmetric={
                "cos_ab": _cosine(side_a[0], side_b[0]),
                "tfidf_cos_ab": _cosine(side_a[1], side_b[1]),
            },
        )
        blocks, columns = [cosines.values], list(cosines.columns)
        for pooling, a_vectors, b_vectors in zip(
            ("mean", "tfidf"), side_a, side_b, strict=True
        ):
            names = [f"w2v_{pooling}_{i}" for i in range(self.vector_size)]
            more_blocks, more_columns = side_outputs(
                self.output, names, a_vectors, b_vectors
            )
            blocks += more_blocks
            columns += more_columns
        values = np.hstack(blocks).astype(np.float32)
        return FeatureMatrix(values, tuple(columns))

    # ------------------------------------------------------------------ state
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Vocabulary (JSON list), word vectors and idf weights."""
        self._check_fitted()
        state = {"format": _STATE_FORMAT, "vocabulary": list(self.vocabulary_)}
        return state, {"vectors": self.vectors_, "idf": self.idf_}

    def set_state(
        self, state: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> Word2VecBlock:
        """Restore a block written by :meth:`get_state`.

        Raises
        ------
        InvalidParameterError
            A parameter outside its allowed values.
        ValueError
            Another state format, or vocabulary, vectors and idf of mismatched
            sizes (or vectors of another ``vector_size``).
        """
        check_parameters(self)
        self._check_state_format(state, _STATE_FORMAT)
        vocabulary = [str(word) for word in state["vocabulary"]]
        vectors = np.asarray(arrays["vectors"], dtype=np.float32)
        idf = np.asarray(arrays["idf"], dtype=np.float64)
        expected = (len(vocabulary), self.vector_size)
        if vectors.shape != expected or idf.shape != (len(vocabulary),):
            raise ValueError(
                f"Word2VecBlock state has {len(vocabulary)} words, vectors of shape "
                f"{vectors.shape} and idf of shape {idf.shape}; expected vectors "
                f"{expected} for vector_size={self.vector_size}. Use the params the "
                "state was fitted with."
            )
        self._build(vocabulary, vectors, idf)
        return self


def _count_matrix(
    token_lists: Sequence[list[str]], index: dict[str, int]
) -> sp.csr_matrix:
    """Sparse (texts x vocabulary) word counts; unknown words are skipped."""
    get = index.get
    ids: list[int] = []
    indptr = [0]
    for tokens in token_lists:
        ids += [i for i in map(get, tokens) if i is not None]
        indptr.append(len(ids))
    counts = sp.csr_matrix(
        (
            np.ones(len(ids), dtype=np.float64),
            np.asarray(ids, dtype=np.int64),
            np.asarray(indptr, dtype=np.int64),
        ),
        shape=(len(token_lists), len(index)),
    )
    counts.sum_duplicates()
    return counts


def _cosine(x: NDArray, y: NDArray) -> NDArray:
    """Row-wise cosine, 0 where either vector is zero."""
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    dots = np.einsum("ij,ij->i", x, y)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(cosine, -1.0, 1.0)
