"""Word-level statistics over plain text."""

import re

_WORD = re.compile(r"[A-Za-z']+")


def tokenize(text):
    """Split text into lowercase words; apostrophes inside words are kept ("don't")."""
    return [word.lower().strip("'") for word in _WORD.findall(text) if word.strip("'")]


def word_counts(text):
    """Return a dict mapping each word to how often it occurs."""
    counts = {}
    for word in tokenize(text):
        counts[word] = counts.get(word, 0) + 1
    return counts


def unique_words(words):
    """Return the words in first-seen order, without duplicates."""
    result = []
    for word in words:
        if word not in result:
            result.append(word)
    return result


def top_words(text, n):
    """Return the n most frequent words, most frequent first; ties are broken alphabetically."""
    counts = word_counts(text)
    return sorted(counts, key=lambda word: -counts[word])[:n]
