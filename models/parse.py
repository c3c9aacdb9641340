"""Raw bytes in, a typed event or a structured rejection out.

This is the only place input is validated.  It never raises: whatever a
producer sends, the caller gets something it can either process or dead-letter
with a reason, so bad input can neither stop a worker nor vanish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import TypeAdapter, ValidationError

from models.config import EngineConfig
from models.events import Event, OpportunityCreated

DEFAULT_MAX_BYTES: Final = 64 * 1024
DEFAULT_CURRENCIES: Final = EngineConfig().currencies

_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused, with its original bytes for the dead-letter topic.

    `reason` is a stable code (`oversize`, `invalid_json`, `not_an_object`,
    `missing_type`, `unknown_type`, `missing_field`, `invalid_field`,
    `unknown_currency`) that dashboards count by; `detail` is for humans.
    """

    reason: str
    detail: str
    raw: bytes
    field: str | None = None


def parse_event(
    raw: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    currencies: frozenset[str] = DEFAULT_CURRENCIES,
) -> Event | Rejection:
    """Validate one message; `currencies` lists the ones the engine can convert."""
    if len(raw) > max_bytes:
        return Rejection("oversize", f"{len(raw)} bytes > limit {max_bytes}", raw)
    try:
        event = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _rejection(exc, raw)
    except Exception as exc:  # the contract is that nothing escapes
        return Rejection("invalid_json", f"{type(exc).__name__}: {exc}"[:300], raw)
    # Only OpportunityCreated carries a currency.  Not `getattr(event, "currency",
    # None)`: on the other models that miss goes through pydantic's `__getattr__`,
    # which cost three times the JSON validation itself.
    if isinstance(event, OpportunityCreated) and event.currency not in currencies:
        return Rejection("unknown_currency", f"no rate for {event.currency}", raw, "currency")
    return event


def _rejection(exc: ValidationError, raw: bytes) -> Rejection:
    """Map pydantic's first error onto our stable reason codes."""
    error = exc.errors(include_url=False, include_input=False)[0]
    kind = error["type"]
    loc = [str(part) for part in error["loc"]]
    # For a tagged union pydantic prefixes the location with the tag value.
    field = ".".join(loc[1:] if len(loc) > 1 else loc) or None
    message = str(error["msg"])[:300]
    if kind == "json_invalid":
        return Rejection("invalid_json", message, raw)
    if kind in ("dict_type", "model_attributes_type", "model_type"):
        return Rejection("not_an_object", message, raw)
    if kind == "union_tag_not_found":
        return Rejection("missing_type", message, raw, "type")
    if kind == "union_tag_invalid":
        return Rejection("unknown_type", message, raw, "type")
    if kind == "missing":
        return Rejection("missing_field", message, raw, field)
    return Rejection("invalid_field", message, raw, field)
