from textstats import tokenize, top_words, unique_words, word_counts


def test_tokenize_handles_non_latin_letters():
    assert tokenize("Straße naïve Ærø") == ["straße", "naïve", "ærø"]


def test_tokenize_drops_digits_and_underscores():
    assert tokenize("room_101 is free") == ["room", "is", "free"]


def test_word_counts_with_accents():
    assert word_counts("été été hiver") == {"été": 2, "hiver": 1}


def test_top_words_ties_and_limit():
    assert top_words("c b a c b a d", 3) == ["a", "b", "c"]


def test_unique_words_on_many_words():
    words = [str(i % 50) for i in range(1000)]
    assert unique_words(words) == [str(i) for i in range(50)]
