"""A seeded, realistic synthetic event stream (SPEC §1) for demos and tests.

`generate(SyntheticConfig(seed=...))` returns JSON-ready dicts, one per event,
that validate against `models.events`, plus (when `invalid` > 0) deliberately
malformed raw lines as `str` items.  The package is pure: no I/O, no clock, no
global random state, so one config always yields the same list.  It is a
tool beside the domain (`models`), not part of it: `generate`, `demo`,
`bench` and the tests use it.

Modules: `config` (what to generate), `catalogue` (partners, programmes,
channels and their typical figures), `world` (the clean world, built in
event-time order), `goals` (targets set against the world's own outcomes),
`perturb` (shuffling, duplicates, malformed lines).

The simulated world:

- 8 partners with different strengths (`PARTNERS`): how often their campaigns
  reach leads, how many accounts install their integration, how much they lift
  win rates and shorten cycles, and how they score us in feedback.
- 40 campaigns: 36 named by the convention
  `<period>_<program>_<partner>_<channel>_<region>_<slug>` (two in mixed case),
  4 that do not follow it ("Spring Promo", "webinar-ai", ...).  Most have a
  registry entry (`campaign`: spend, goal, sometimes a partner, sometimes a
  later update) and weekly cumulative `campaign_stats`.
- Lead journeys of 1-8 touches across campaigns, with repeat touches
  (registered -> attended, second clicks), explicit `channel` / `partner`
  overrides / `account_id` on some; `lead_created` for ~92 % of leads (a few
  before any touch, some with `source_partner`, ~1.5 % twice); `mql` for ~40 %;
  ~8 % of leads re-engaged by a partner campaign after >90 days of silence.
- About one opportunity per 6 leads (70 % new business, 30 % expansion) with
  1-3 contacts of one account (primary first), ARR 5k-250k in several
  currencies, some partner-sourced or partner-referred; stage histories with
  skipped stages, regressions, ARR changes and the odd repeated closed_won.
- Per account and partner: integration installs, periodic usage, abandonment,
  uninstalls and reinstalls; monthly `account_snapshot`s of customers whose
  churn falls with integration depth; `partner_feedback`; referrals we send
  to partners and their outcomes.

Units: ARR and spend are plain amounts in the event's currency (account
snapshots, spend and referral ARR in the reporting currency, USD).  Goal
targets are in the goal metric's own unit (counts, or cents for `*_arr`).

Perturbations, applied after the clean stream is built from its own random
streams (so they never change the clean events): `shuffle` moves that fraction
of events to random positions, `duplicates` re-emits that fraction (same
`event_id`, identical content) at a later position, `invalid` adds that
fraction of malformed lines at random positions.
"""

from __future__ import annotations

from datagen.catalogue import PARTNERS, Partner
from datagen.config import DEFAULT_START, SyntheticConfig
from datagen.perturb import perturb
from datagen.world import World

__all__ = ["DEFAULT_START", "PARTNERS", "Partner", "SyntheticConfig", "generate"]


def generate(config: SyntheticConfig) -> list[dict[str, object] | str]:
    """The event stream for `config`: dicts (valid events) and str (malformed lines)."""
    return perturb(config, World(config).build())
