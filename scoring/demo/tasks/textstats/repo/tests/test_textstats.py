from textstats import tokenize, top_words, unique_words, word_counts


def test_tokenize_lowercases_and_splits_on_punctuation():
    assert tokenize("Hello, world! Hello.") == ["hello", "world", "hello"]


def test_tokenize_keeps_apostrophes_inside_words():
    assert tokenize("Don't stop") == ["don't", "stop"]


def test_tokenize_keeps_accented_letters():
    assert tokenize("Café crème") == ["café", "crème"]


def test_word_counts():
    assert word_counts("a b a") == {"a": 2, "b": 1}


def test_unique_words_keeps_first_seen_order():
    assert unique_words(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_top_words_breaks_ties_alphabetically():
    assert top_words("pear apple pear apple fig", 2) == ["apple", "pear"]
