"""Redis key names: building and parsing them, nothing else (pure functions).

Every part of a key that comes from data (partner, campaign and channel
names inside scopes, subject ids) is percent-encoded: the RFC 3986
unreserved characters ``A-Z a-z 0-9 . _ ~ -`` stay, every other byte of the
UTF-8 encoding becomes ``%XX``.  So an encoded part never contains ``:``
(our separator), ``{``/``}`` (Redis Cluster hash tags), glob characters
(``* ? [ ] \\``, which ``SCAN MATCH`` and ``KEYS`` interpret), spaces or
control characters, and decoding is exact.

A scope or subject ``kind:name`` keeps its kind as a readable key segment and
encodes the name: scope ``partner:slack`` is hash ``pp:m:partner:slack``,
``campaign:2026q3 webinar`` is ``pp:m:campaign:2026q3%20webinar``, and
``all`` is ``pp:m:all``.

Key layout (prefix ``pp:`` by default):

| key | type | content |
|---|---|---|
| ``pp:m:<scope>`` | hash | metric -> integer value |
| ``pp:d:<scope>:<metric>`` | hash | day (``YYYY-MM-DD``) -> value from that day's events |
| ``pp:lb:<metric>`` | sorted set | partner id -> the partner's value of the metric |
| ``pp:credit:<subject>`` | hash | touch id -> JSON credit line |
| ``pp:contrib:<subject>`` | string | JSON metrics the subject last published |
| ``pp:dlq:seen`` | hash | ``topic|partition|offset`` -> reason, dead letters counted |
| ``pp:offsets`` | hash | ``topic|partition`` -> highest applied offset |
| ``pp:changes`` | stream + pub/sub channel | change notifications (capped) |
| ``pp:outbox`` | stream (uncapped) + consumer group | changes not yet relayed to Kafka |
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_to_bytes

DEFAULT_PREFIX: Final = "pp:"

NAMES_CACHED: Final = 1 << 14
"""Names each escaping cache keeps: every scope (a few thousand) and the subjects of
the latest batches.  Subject names are as many as leads; 65,536 of them per cache
held about 15 MiB each at 200k leads, for hits mostly on scopes."""

_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
_ESCAPED: Final = re.compile(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})*")
_GLOB: Final = re.compile(r"([*?\[\]\\])")


@lru_cache(maxsize=NAMES_CACHED)
def escape(part: str) -> str:
    """Percent-encode one key part (UTF-8; upper-case hex)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in part.encode("utf-8"))


def unescape(part: str) -> str:
    """Inverse of `escape`; raises ValueError on anything `escape` cannot produce."""
    if not _ESCAPED.fullmatch(part):
        raise ValueError(f"not an escaped key part: {part!r}")
    return unquote_to_bytes(part).decode("utf-8")


@lru_cache(maxsize=NAMES_CACHED)
def escape_named(value: str) -> str:
    """``kind:name`` -> ``<kind>:<name>`` with both parts escaped; no ``:`` -> one part."""
    kind, sep, name = value.partition(":")
    return escape(kind) + (":" + escape(name) if sep else "")


@lru_cache(maxsize=NAMES_CACHED)
def unescape_named(part: str) -> str:
    """Inverse of `escape_named` (cached like it: the forwarder decodes a scope per
    metric change, and a few thousand scopes repeat across every batch)."""
    kind, sep, name = part.partition(":")
    if ":" in name:
        raise ValueError(f"not an escaped scope or subject: {part!r}")
    return unescape(kind) + (":" + unescape(name) if sep else "")


def glob_escape(text: str) -> str:
    """`text` as a literal inside a ``SCAN MATCH`` pattern."""
    return _GLOB.sub(r"\\\1", text)


class Keys:
    """All key names under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.metrics_prefix = prefix + "m:"
        self.series_prefix = prefix + "d:"
        self.leaderboard_prefix = prefix + "lb:"
        self.credit_prefix = prefix + "credit:"
        self.contrib_prefix = prefix + "contrib:"
        self.dlq_seen = prefix + "dlq:seen"
        self.offsets = prefix + "offsets"
        self.changes = prefix + "changes"
        self.outbox = prefix + "outbox"

    def metrics(self, scope: str) -> str:
        return self.metrics_prefix + escape_named(scope)

    def series(self, scope: str, metric: str) -> str:
        return f"{self.series_prefix}{escape_named(scope)}:{escape(metric)}"

    def leaderboard(self, metric: str) -> str:
        return self.leaderboard_prefix + escape(metric)

    def series_of(self, key: str) -> tuple[str, str]:
        """(scope, metric) of a ``<prefix>d:<scope>:<metric>`` key."""
        scope, _, metric = _strip(key, self.series_prefix).rpartition(":")
        return unescape_named(scope), unescape(metric)

    def credit(self, subject: str) -> str:
        return self.credit_prefix + escape_named(subject)

    def contrib(self, subject: str) -> str:
        return self.contrib_prefix + escape_named(subject)

    def scope_of(self, key: str) -> str:
        """The scope of a ``<prefix>m:<scope>`` key."""
        return unescape_named(_strip(key, self.metrics_prefix))

    def subject_of(self, key: str) -> str:
        """The subject of a ``<prefix>credit:<subject>`` key."""
        return unescape_named(_strip(key, self.credit_prefix))

    def metrics_pattern(self) -> str:
        """``SCAN MATCH`` pattern of every metrics hash."""
        return glob_escape(self.metrics_prefix) + "*"

    def series_pattern(self) -> str:
        """``SCAN MATCH`` pattern of every daily series hash."""
        return glob_escape(self.series_prefix) + "*"

    def credit_pattern(self) -> str:
        """``SCAN MATCH`` pattern of every credit breakdown hash."""
        return glob_escape(self.credit_prefix) + "*"

    def all_pattern(self) -> str:
        """``SCAN MATCH`` pattern of every key under the prefix (for cleanup)."""
        return glob_escape(self.prefix) + "*"


def _strip(key: str, prefix: str) -> str:
    if not key.startswith(prefix):
        raise ValueError(f"key {key!r} is not under {prefix!r}")
    return key[len(prefix) :]
