"""Turn titles into URL slugs."""

from slugify.core import slugify

__all__ = ["slugify"]
