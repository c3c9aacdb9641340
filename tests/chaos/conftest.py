"""Fixtures of the chaos tests: the broker of each kind (tests/integration/brokers.py)."""

from __future__ import annotations

from tests.integration.brokers import broker

__all__ = ["broker"]
