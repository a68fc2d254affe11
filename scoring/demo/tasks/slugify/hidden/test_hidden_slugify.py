from slugify import slugify


def test_french_dessert():
    assert slugify("Crème Brûlée") == "creme-brulee"


def test_accents_with_custom_separator():
    assert slugify("naïve résumé", separator="_") == "naive_resume"


def test_short_max_length_strips_separator():
    assert slugify("ab cd", max_length=3) == "ab"


def test_digits_are_kept():
    assert slugify("Top 10 Tips") == "top-10-tips"


def test_whitespace_only():
    assert slugify("   ") == ""
