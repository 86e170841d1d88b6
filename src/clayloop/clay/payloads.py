"""Reading the callbacks Clay's HTTP API action sends us: which request, what outcome, what value.

Pure functions, no I/O. The HTTP layer parses the JSON body, calls :func:`extract_callback` to
learn what the payload *says*, finds the request in the database (by id, token or email),
and then calls :func:`decide` with the kind it now knows to learn what to *record*.

Clay tables are configured by hand, so bodies come in every shape people produce. The rules
(key aliases, synonyms, placeholders) live in :mod:`clayloop.clay.aliases`; this module applies
them. Anything that cannot be read deterministically is refused with a :class:`CallbackError`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from clayloop.clay.aliases import (
    CALLBACK_TOKEN_KEYS,
    CONTAINER_KEYS,
    CONTAINER_MAX_DEPTH,
    EMAIL_KEYS,
    EMAIL_MAX_CHARS,
    ID_MAX_CHARS,
    KIND_KEYS,
    KIND_SYNONYMS,
    LEAD_ID_KEYS,
    MESSAGE_INNER_KEYS,
    MESSAGE_KEYS,
    MESSAGE_MAX_CHARS,
    PLACEHOLDER_STRINGS,
    RAW_VALUE_MAX_CHARS,
    REQUEST_ID_KEYS,
    STATUS_KEYS,
    STATUS_SYNONYMS,
    SUCCESS_FALSE,
    SUCCESS_KEYS,
    SUCCESS_TRUE,
    TEMPLATE_TOKEN,
    VALUE_INNER_KEYS,
    VALUE_KEYS,
    VALUE_MAX_DEPTH,
    VALUE_MAX_ITEMS,
    Kind,
    Outcome,
    normalize_key,
)
from clayloop.leads.normalize import InvalidValue, normalize_linkedin_url, normalize_phone

__all__ = [
    "CallbackError",
    "CallbackFields",
    "Decision",
    "Kind",
    "Outcome",
    "decide",
    "extract_callback",
]

_T = TypeVar("_T")

# At most this many containers (top level included) are searched, however odd the body.
_MAX_CONTAINERS: Final = 64
# Ints wider than this are not ids and would be slow (or refused) to print.
_MAX_INT_BITS: Final = 1024
# Longer strings are never a phone number or a profile URL; don't hand them to the normalizers.
_MAX_VALUE_CHARS: Final = 2048
_SHOWN_CHARS: Final = 100


class CallbackError(Exception):
    """A callback we refuse.

    The HTTP layer answers ``status`` with ``{"error": code, "detail": detail}``.
    """

    status: int
    code: str
    detail: str

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class CallbackFields:
    """What a callback body says, before we know from the database which kind it answers."""

    request_id: str | None
    lead_id: str | None
    callback_token: str | None
    kind: Kind | None
    """Declared kind, else inferred from which value field is present, else None."""
    kind_declared: bool
    """Whether ``kind`` was declared (enrichment_type, …) rather than inferred."""
    email: str | None
    """Raw (trimmed) email hint, for the lookup when there are no ids."""
    linkedin_raw: object
    """Raw value found under a LinkedIn alias (None if no such key)."""
    phone_raw: object
    """Raw value found under a phone alias (None if no such key)."""
    has_linkedin_key: bool
    has_phone_key: bool
    status: Outcome | None
    """Outcome named by a status string."""
    success: bool | None
    """A success flag."""
    message: str | None
    """Clay's error / message / reason text, truncated to 500 characters."""


@dataclass(frozen=True)
class Decision:
    """What to record for one callback."""

    outcome: Outcome
    value: str | None
    """The normalized value when outcome == "enriched"."""
    reason: str | None
    """"empty_value", "invalid_value", or Clay's message for failures."""
    raw_value: str | None
    """The raw value as text when it was rejected (for the journal only)."""


def extract_callback(body: dict[str, Any]) -> CallbackFields:
    """Read ids, kind, outcome and values out of a parsed callback body.

    Keys match case- and separator-insensitively, at the top level first and then inside
    ``data`` / ``result`` / ``fields`` / ``record`` / ``body`` objects, breadth-first. Raises
    :class:`CallbackError` (422) for an unknown status, an unknown kind or an unreadable success
    flag, and never anything else.
    """
    if not isinstance(body, dict):
        raise CallbackError(422, "invalid_body", "the callback body must be a JSON object")
    keys = _KeyIndex(body)

    has_linkedin_key, linkedin_raw = _pick_value(keys, "linkedin")
    has_phone_key, phone_raw = _pick_value(keys, "phone")
    kind: Kind | None = _first(keys, KIND_KEYS, _read_kind)
    kind_declared = kind is not None
    if kind is None and has_linkedin_key != has_phone_key:
        kind = "linkedin" if has_linkedin_key else "phone"

    return CallbackFields(
        request_id=_first(keys, REQUEST_ID_KEYS, _read_id),
        lead_id=_first(keys, LEAD_ID_KEYS, _read_id),
        callback_token=_first(keys, CALLBACK_TOKEN_KEYS, _read_id),
        kind=kind,
        kind_declared=kind_declared,
        email=_first(keys, EMAIL_KEYS, _read_email),
        linkedin_raw=linkedin_raw,
        phone_raw=phone_raw,
        has_linkedin_key=has_linkedin_key,
        has_phone_key=has_phone_key,
        status=_first(keys, STATUS_KEYS, _read_status),
        success=_first(keys, SUCCESS_KEYS, _read_success),
        message=_first(keys, MESSAGE_KEYS, _read_message),
    )


def decide(fields: CallbackFields, kind: Kind, region: str = "US") -> Decision:
    """Turn what a callback says about ``kind`` into what we record. Never raises.

    The outcome comes from the status if there is one, else from the success flag (false is
    "failed" when Clay gave a message, else "not_found"), else from whether a value is present.
    An "enriched" outcome still needs a value that normalizes; otherwise it is recorded as
    "not_found" with reason "empty_value" or "invalid_value".
    """
    raw = fields.linkedin_raw if kind == "linkedin" else fields.phone_raw
    candidate = _value_candidate(raw, kind)

    outcome: Outcome
    if fields.status is not None:
        outcome = fields.status
    elif fields.success is True:
        outcome = "enriched"
    elif fields.success is False:
        outcome = "failed" if fields.message else "not_found"
    elif candidate is None:
        return Decision("not_found", None, "empty_value", None)
    else:
        outcome = "enriched"

    if outcome == "failed":
        return Decision("failed", None, fields.message or "error", None)
    if outcome == "not_found":
        return Decision("not_found", None, fields.message, None)
    if candidate is None:
        return Decision("not_found", None, "empty_value", None)
    normalized = _normalize(candidate, kind, region)
    if normalized is None:
        return Decision("not_found", None, "invalid_value", _candidate_text(candidate))
    return Decision("enriched", normalized, None, None)


# --- Finding keys -------------------------------------------------------------------------


class _KeyIndex:
    """A callback body's values by normalized key, one map per container in lookup order."""

    def __init__(self, body: dict[Any, Any]) -> None:
        self.levels: list[dict[str, list[object]]] = []
        queue: deque[tuple[dict[Any, Any], int]] = deque([(body, 0)])
        while queue and len(self.levels) < _MAX_CONTAINERS:
            container, depth = queue.popleft()
            level = _index_object(container)
            self.levels.append(level)
            if depth >= CONTAINER_MAX_DEPTH:
                continue
            for key, values in level.items():
                if key in CONTAINER_KEYS:
                    queue.extend((v, depth + 1) for v in values if isinstance(v, dict))

    def values(self, keys: tuple[str, ...]) -> Iterator[object]:
        """Values under any of ``keys``: container by container, then by key priority."""
        for level in self.levels:
            for key in keys:
                yield from level.get(key, ())


def _index_object(obj: dict[Any, Any]) -> dict[str, list[object]]:
    """Group an object's values by normalized key, keeping their order."""
    index: dict[str, list[object]] = {}
    for key, value in obj.items():
        if isinstance(key, str):
            index.setdefault(normalize_key(key), []).append(value)
    return index


def _first(
    keys: _KeyIndex, aliases: tuple[str, ...], read: Callable[[object], _T | None]
) -> _T | None:
    """The first value under ``aliases`` that ``read`` accepts (returns non-None for)."""
    for value in keys.values(aliases):
        result = read(value)
        if result is not None:
            return result
    return None


def _pick_value(keys: _KeyIndex, kind: Kind) -> tuple[bool, object]:
    """Whether any alias of ``kind`` is present, and the raw value to use.

    The first value holding something usable wins; if none does, the first one found is kept
    (it shows what Clay sent).
    """
    found = False
    first: object = None
    for value in keys.values(VALUE_KEYS[kind]):
        if _value_candidate(value, kind) is not None:
            return True, value
        if not found:
            found, first = True, value
    return found, first


# --- Reading single values ----------------------------------------------------------------


def _is_placeholder(text: str) -> bool:
    """Whether ``text`` (already trimmed) means "no value"."""
    return (
        not text
        or text.lower() in PLACEHOLDER_STRINGS
        or TEMPLATE_TOKEN.fullmatch(text) is not None
    )


def _is_absent(value: object) -> bool:
    """Whether a raw JSON value means "not given" (null or a placeholder string)."""
    return value is None or (isinstance(value, str) and _is_placeholder(value.strip()))


def _show(value: object) -> str:
    """A short, safe rendering of a raw value for an error detail."""
    if isinstance(value, str):
        return repr(value[:_SHOWN_CHARS])
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 256 else "a very large number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _read_id(value: object) -> str | None:
    """An id or token hint: a trimmed string or an int, at most 200 characters."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value.bit_length() <= _MAX_INT_BITS:
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    # Too long to be one of our ids: treated as absent, so the lookup falls back to the
    # other hints rather than failing on a value that cannot match.
    if _is_placeholder(text) or len(text) > ID_MAX_CHARS:
        return None
    return text


def _read_email(value: object) -> str | None:
    """An email hint, trimmed but otherwise as sent; the caller normalizes it."""
    if isinstance(value, str):
        text = value.strip()
        if not _is_placeholder(text) and len(text) <= EMAIL_MAX_CHARS:
            return text
    return None


def _read_kind(value: object) -> Kind | None:
    """The kind a declared type names; None when absent, CallbackError when unknown."""
    if _is_absent(value):
        return None
    kind = KIND_SYNONYMS.get(normalize_key(value)) if isinstance(value, str) else None
    if kind is None:
        raise CallbackError(
            422,
            "unknown_kind",
            f"unknown enrichment type {_show(value)}; accepted: 'linkedin' or 'phone'"
            " (or a synonym such as 'linkedin_url', 'mobile_phone')",
        )
    return kind


def _read_status(value: object) -> Outcome | None:
    """The outcome a status string names; None when absent, CallbackError when unknown."""
    if _is_absent(value):
        return None
    outcome = STATUS_SYNONYMS.get(normalize_key(value)) if isinstance(value, str) else None
    if outcome is None:
        raise CallbackError(
            422,
            "unknown_status",
            f"unknown status {_show(value)}; use 'success', 'not_found' or 'failed'"
            " (or a synonym such as 'found', 'no_match', 'error')",
        )
    return outcome


def _read_success(value: object) -> bool | None:
    """A success flag; None when absent, CallbackError when unreadable."""
    if _is_absent(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in SUCCESS_TRUE:
            return True
        if text in SUCCESS_FALSE:
            return False
    raise CallbackError(
        422,
        "invalid_success",
        f"cannot read success flag {_show(value)}; use true/false, 1/0 or yes/no",
    )


def _read_message(value: object, depth: int = 0) -> str | None:
    """Clay's message: a string, or one inside an error object or array, truncated."""
    if isinstance(value, str):
        text = value.strip()
        return None if _is_placeholder(text) else text[:MESSAGE_MAX_CHARS]
    if depth >= VALUE_MAX_DEPTH:
        return None
    inner: Iterator[object] = iter(())
    if isinstance(value, list):
        inner = iter(value[:VALUE_MAX_ITEMS])
    elif isinstance(value, dict):
        index = _index_object(value)
        inner = (v for key in MESSAGE_INNER_KEYS for v in index.get(key, ()))
    for item in inner:
        found = _read_message(item, depth + 1)
        if found is not None:
            return found
    return None


def _value_candidate(value: object, kind: Kind, depth: int = 0) -> str | int | None:
    """The first usable (non-placeholder) candidate in a raw value.

    Strings are trimmed; ints and integral floats (phones that went through a spreadsheet)
    stay ints, because the phone normalizer reads those as digits that may have lost their
    "+"; an array gives its first usable element; an object its ``value`` / ``url`` /
    ``number`` / ``phone`` (or one of the kind's own aliases). Booleans are never values.
    """
    if isinstance(value, str):
        text = value.strip()
        return None if _is_placeholder(text) else text
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 1e18:
            return int(value)
        return repr(value)
    if depth >= VALUE_MAX_DEPTH:
        return None
    inner: Iterator[object] = iter(())
    if isinstance(value, list):
        inner = iter(value[:VALUE_MAX_ITEMS])
    elif isinstance(value, dict):
        index = _index_object(value)
        inner_keys = dict.fromkeys(VALUE_INNER_KEYS + VALUE_KEYS[kind])
        inner = (v for key in inner_keys for v in index.get(key, ()))
    for item in inner:
        candidate = _value_candidate(item, kind, depth + 1)
        if candidate is not None:
            return candidate
    return None


def _candidate_text(candidate: str | int) -> str:
    """A rejected candidate as text for the journal, truncated."""
    if isinstance(candidate, int) and candidate.bit_length() > _MAX_INT_BITS:
        return "<integer too large>"
    return str(candidate)[:RAW_VALUE_MAX_CHARS]


def _normalize(candidate: str | int, kind: Kind, region: str) -> str | None:
    """The canonical form of a value, or None when the normalizer rejects it."""
    if isinstance(candidate, str) and len(candidate) > _MAX_VALUE_CHARS:
        return None
    try:
        if kind == "linkedin":
            return normalize_linkedin_url(candidate) if isinstance(candidate, str) else None
        return normalize_phone(candidate, region)
    except InvalidValue:
        return None
