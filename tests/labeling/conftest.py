import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Accounts are made per test; the production hasher would spend most of the run hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
