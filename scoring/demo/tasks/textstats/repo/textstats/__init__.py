"""Small text statistics helpers: tokenizing, counting and de-duplicating words."""

from textstats.core import tokenize, top_words, unique_words, word_counts

__all__ = ["tokenize", "top_words", "unique_words", "word_counts"]
