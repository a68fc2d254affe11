from slugify import slugify


def test_basic_title():
    assert slugify("Hello, World!") == "hello-world"


def test_custom_separator():
    assert slugify("a b", separator="_") == "a_b"


def test_empty_text():
    assert slugify("") == ""


def test_accents_are_removed():
    assert slugify("Café au lait") == "cafe-au-lait"


def test_max_length_does_not_end_with_separator():
    assert slugify("hello world", max_length=6) == "hello"
