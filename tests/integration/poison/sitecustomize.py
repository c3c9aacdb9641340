"""Fault injection for the poison tests: imported by every Python process started
with this directory on PYTHONPATH (the workers a test spawns).

With `PP_TEST_POISON_LEAD` set, settling that lead raises, as a bug met by
one subject's data would.  The test applies the same fault (`poison_lead`)
in its own process to run the oracle.
"""

from __future__ import annotations

import os

from models.context import Context
from models.lead import LeadState
from models.subject import Contribution

ORIGINAL = LeadState.contribute


def poison_lead(key: str) -> None:
    """Make `LeadState.contribute` raise for the lead `key`."""

    def contribute(self: LeadState, ctx: Context) -> Contribution:
        if self.key == key:
            raise RuntimeError(f"injected fault settling lead {key}")
        return ORIGINAL(self, ctx)

    LeadState.contribute = contribute  # type: ignore[method-assign]


if os.environ.get("PP_TEST_POISON_LEAD"):
    poison_lead(os.environ["PP_TEST_POISON_LEAD"])
