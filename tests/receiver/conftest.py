"""Fixtures of the receiver tests."""

from __future__ import annotations

import pytest
import trustme


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throw-away certificate authority for the TLS listener and its clients."""
    return trustme.CA()
