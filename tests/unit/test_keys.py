"""Redis keys built from partner and campaign names: exact round trip, no collisions.

The Redis side (SCAN MATCH over hostile names and glob-like prefixes) is in
tests/integration/test_redis_sink.py and test_security.py.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.keys import Keys

KEYS = Keys("pp:")
# After the prefix: `m:`, a readable kind, then one escaped name with no separator,
# brace, glob character, space, control character or non-ASCII byte left in it.
METRICS_KEY = re.compile(r"pp:m:[a-z]+:[A-Za-z0-9._~%-]*")

# Names that differ only in a character with a meaning somewhere (separator, hash
# tag, glob, escape, whitespace), or in how they could look once escaped.
NAMES = [
    "slack",
    "Slack",
    "a:b",
    "a%3Ab",
    "a|b",
    "a%7Cb",
    "{a}",
    "a}{",
    "a b",
    "a%20b",
    "a+b",
    "a_b",
    "a*",
    "a?",
    "a[b]",
    "a\\b",
    "a\nb",
    "a\r\nb",
    "a\tb",
    "100%",
    "100%25",
    "%",
    "%%",
    "ä",
    "a\u0308",  # the same letter, decomposed
    "☃",
    "🚀",
    "",
]


def test_partner_and_campaign_keys_round_trip_and_never_collide() -> None:
    scopes = [f"{kind}:{name}" for kind in ("partner", "campaign", "channel") for name in NAMES]
    keys = [KEYS.metrics(scope) for scope in scopes]
    for scope, key in zip(scopes, keys, strict=True):
        assert METRICS_KEY.fullmatch(key), key
        assert KEYS.scope_of(key) == scope
    assert len(set(keys)) == len(scopes)


def test_known_encodings() -> None:
    # RFC 3986 unreserved characters stay; every other UTF-8 byte is %XX, upper case.
    assert KEYS.metrics("campaign:2026Q3 webinar") == "pp:m:campaign:2026Q3%20webinar"
    assert KEYS.metrics("partner:a:b|{c}*?[d]") == "pp:m:partner:a%3Ab%7C%7Bc%7D%2A%3F%5Bd%5D"
    assert KEYS.metrics("channel:ä\n%") == "pp:m:channel:%C3%A4%0A%25"
    assert KEYS.credit("opportunity:o 1") == "pp:credit:opportunity:o%201"


@settings(max_examples=2000, deadline=None)
@given(st.text(), st.text())
def test_any_two_names_get_distinct_keys_that_decode_back(a: str, b: str) -> None:
    key_a, key_b = KEYS.metrics(f"campaign:{a}"), KEYS.metrics(f"campaign:{b}")
    assert METRICS_KEY.fullmatch(key_a)
    assert KEYS.scope_of(key_a) == f"campaign:{a}"
    assert (key_a == key_b) == (a == b)
