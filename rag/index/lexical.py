"""Swedish keyword search: Snowball stemming, stop words, compound splitting, BM25 via bm25s.

Swedish glues words together ("försörjningsstödsenheten"); a long word whose two halves are both
words of the corpus also yields those halves, so "försörjningsstöd" still finds it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache

import numpy as np

_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*", re.UNICODE)
_MIN_PART = 4
_MIN_COMPOUND = 9


@cache
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("swedish")


@cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_SWEDISH

    return frozenset(STOPWORDS_SWEDISH)


def stem(word: str) -> str:
    return _stemmer().stemWord(word)


def words(text: str) -> list[str]:
    """Lower-cased words without stop words; hyphenated words also give their parts."""
    out = []
    for match in _WORD.finditer(text.lower()):
        word = match.group()
        parts = word.split("-")
        for token in ([word] + parts if len(parts) > 1 else [word]):
            if len(token) > 1 and token not in _stopwords():
                out.append(token)
    return out


def stems(text: str, vocabulary: frozenset[str] = frozenset()) -> list[str]:
    """Stemmed words, plus the stems of compound parts found in `vocabulary`."""
    stemmer = _stemmer()
    out = []
    for word in words(text):
        out.append(stemmer.stemWord(word))
        if vocabulary and len(word) >= _MIN_COMPOUND:
            out.extend(_compound_parts(word, vocabulary))
    return out


def _compound_parts(word: str, vocabulary: frozenset[str], depth: int = 2) -> list[str]:
    """Split `word` into known stems (longest head first, a linking s allowed); [] if it won't split."""
    stem = _stemmer().stemWord
    for cut in range(len(word) - _MIN_PART, _MIN_PART - 1, -1):
        head, tail = word[:cut], word[cut:]
        tail_stem = stem(tail)
        if tail_stem not in vocabulary:
            continue
        for candidate in (head, head[:-1] if head.endswith("s") else None):
            if not candidate or len(candidate) < _MIN_PART:
                continue
            if stem(candidate) in vocabulary:
                return [stem(candidate), tail_stem]
            inner = _compound_parts(candidate, vocabulary, depth - 1) if depth > 1 else []
            if inner:
                return inner + [tail_stem]
    return []


def vocabulary_of(texts: list[str]) -> frozenset[str]:
    """Stems of the corpus' simple words: the parts compounds may be split into."""
    stemmer = _stemmer()
    return frozenset(
        stemmer.stemWord(w) for text in texts for w in words(text) if len(w) >= _MIN_PART and "-" not in w
    )


@dataclass(slots=True)
class LexicalIndex:
    """BM25 over token lists; `search` returns scores for every document (dense array)."""

    bm25: object
    vocabulary: frozenset[str]
    idf: dict[str, float]
    size: int

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        import bm25s

        vocabulary = vocabulary_of(texts)
        corpus = [stems(t, vocabulary) or ["<empty>"] for t in texts]
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every build at DEBUG to stderr
        bm25 = bm25s.BM25()
        bm25.index(corpus, show_progress=False)
        return cls(bm25, vocabulary, _idf(corpus), len(texts))

    def query_tokens(self, question: str) -> list[str]:
        return [t for t in dict.fromkeys(stems(question, self.vocabulary)) if t in self.idf]

    def question_mass(self, question: str) -> float:
        """BM25 score of an average-length passage holding each question word once: the sum of idf."""
        return float(sum(self.idf[t] for t in self.query_tokens(question)))

    def scores(self, question: str) -> np.ndarray:
        return self.scores_for(self.query_tokens(question))

    def scores_for(self, tokens) -> np.ndarray:
        """BM25 of every passage for the given (known) stems."""
        if not tokens:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.bm25.get_scores(list(tokens)), dtype=np.float32)


def _idf(corpus: list[list[str]]) -> dict[str, float]:
    """BM25's idf per token: rare words weigh more when sentences are compared with a question."""
    df: dict[str, int] = {}
    for tokens in corpus:
        for token in set(tokens):
            df[token] = df.get(token, 0) + 1
    n = len(corpus)
    return {t: float(np.log(1 + (n - c + 0.5) / (c + 0.5))) for t, c in df.items()}
