"""Fixtures of the weights tests: accounts and a known active profile (no audit sample, so routes are exact)."""

from __future__ import annotations

import pytest

from scoring.core.critics.registry import CRITERIA
from tests.weights.factories import DEFAULT, new_version
from tuning import services as svc


@pytest.fixture
def admin(make_user):
    user, _ = make_user("ada", "admin")
    return user


@pytest.fixture
def reviewer(make_user):
    user, _ = make_user("rita", "reviewer")
    return user


@pytest.fixture
def base_profile(admin):
    """`test` v1, active: the registry's default weights with no audit sample."""
    assert set(DEFAULT) == set(CRITERIA)
    profile = new_version(admin)
    svc.profile_activate(profile=profile, actor=admin)
    return profile
