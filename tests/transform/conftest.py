"""Shared fixtures for the transform tests: real keyring, compiled policy, real access."""

from __future__ import annotations

import pytest
from transform_helpers import FIELDS, NOBODY

from keys.testing import make_keyring
from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.settings import FieldSettings


@pytest.fixture(scope="session")
def keyring():
    """Three practices with one active key each."""
    return make_keyring(["A", "B", "C"])


@pytest.fixture(scope="session")
def policy():
    """The policy compiled from FIELDS."""
    return FieldPolicy.compile(FieldSettings.model_validate(FIELDS))


@pytest.fixture
def make_ctx(policy, keyring):
    """Build a fresh RevealContext (own stats) for one simulated request."""

    def build(access=NOBODY, route_practice=None):
        return RevealContext(policy, keyring, access, route_practice, TransformStats())

    return build
