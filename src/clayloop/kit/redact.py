"""Masking of personal data and secrets before anything is logged.

Every function here is total: logging must never fail because a value was
odd, so garbage in gives a fully masked ``"***"`` out, never an exception.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from typing import Any

import phonenumbers

__all__ = ["mask_email", "mask_phone", "mask_value", "redact_mapping"]

_FULL_MASK = "***"
_REDACTED = "[redacted]"

_EMAIL_FIELDS = frozenset({"email", "alternate_email", "alternate_emails"})
_PHONE_FIELDS = frozenset({"phone"})

# Anywhere inside a string. The local part is RFC 5322 atext, apostrophe
# included so "o'brien@" is hidden whole (a quoted "'jane@acme.com'" then
# shows as "'***@acme.com'", which hides more, not less). The lookbehind makes a
# match start only at the beginning of a run of local-part characters, which
# keeps the scan linear on long inputs. The last domain label must start with a
# letter so version strings like "1.2@3.4" are left alone.
_EMAIL_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
_EMAIL_RE = re.compile(rf"(?<!{_EMAIL_LOCAL}){_EMAIL_LOCAL}+@(?:[\w-]+\.)+[^\W\d_][\w-]*")

# Characters a written phone number is made of; anything else makes it garbage.
_PHONE_CHARS_RE = re.compile(r"[0-9+()\-./ ]+")
_PHONE_MAX_LEN = 64
_PHONE_KEPT_TAIL = 4

_SECRET_KEY_PARTS = (
    "secret",
    "token",
    "signature",
    "authorization",
    "password",
    "apikey",
    "cookie",
    "credential",
)
_PHONE_KEY_PARTS = ("phone", "mobile", "tel", "cell")


def mask_email(value: str | None) -> str | None:
    """Mask an email address for logs: ``jane@acme.com`` -> ``j***@acme.com``.

    The first character of the local part and the whole domain are kept (the
    domain is what one debugs with). The star count is fixed so the length of
    the local part is not revealed. A value without ``@`` gives ``***``.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return _FULL_MASK
    local, at, domain = value.rpartition("@")
    if not at:
        return _FULL_MASK
    return f"{local[:1]}{_FULL_MASK}@{domain}"


_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")


def _split_country_code(value: str) -> tuple[str, str] | None:
    """Return ("+<cc>", national digits) for an international number, else None."""
    if _E164_RE.fullmatch(value):
        digits = value[1:]
    elif _PHONE_CHARS_RE.fullmatch(value):
        digits = "".join(ch for ch in value if "0" <= ch <= "9")
    else:
        digits = ""
    if digits[:1] not in ("", "0"):
        # Written with digits and separators only (E.164 is what clayloop stores):
        # country codes are prefix-free, so the first known prefix is the code, with
        # no full parse on the logging path.
        for size in (1, 2, 3):
            if int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                return "+" + digits[:size], digits[size:]
        return None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    prefix = f"+{number.country_code}"
    if not e164.startswith(prefix):
        return None
    return prefix, e164[len(prefix) :]


def mask_phone(value: str | None) -> str | None:
    """Mask a phone number for logs: ``+14155550132`` -> ``+1******0132``.

    Keeps the ``+`` and country calling code (the first digit when
    phonenumbers cannot tell the country code), one star per hidden digit, and
    the last four digits. Extensions are not shown. Anything that does not
    look like a phone number, or is too short to hide at least one digit,
    gives ``***``.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return _FULL_MASK
    text = value.strip()
    if not text or len(text) > _PHONE_MAX_LEN:
        return _FULL_MASK

    split = _split_country_code(text) if text.startswith("+") else None
    if split is not None:
        prefix, body = split
    else:
        if not _PHONE_CHARS_RE.fullmatch(text):
            return _FULL_MASK
        digits = "".join(ch for ch in text if "0" <= ch <= "9")
        if not digits:
            return _FULL_MASK
        prefix = ("+" if text.startswith("+") else "") + digits[0]
        body = digits[1:]
    if len(body) <= _PHONE_KEPT_TAIL:
        return _FULL_MASK
    hidden = len(body) - _PHONE_KEPT_TAIL
    return f"{prefix}{'*' * hidden}{body[-_PHONE_KEPT_TAIL:]}"


def mask_value(field: str, value: str | None) -> str | None:
    """Mask ``value`` according to the lead field it belongs to.

    ``email``, ``alternate_email`` and ``alternate_emails`` are email-masked,
    ``phone`` is phone-masked; any other field is returned unchanged.
    """
    name = field.strip().lower() if isinstance(field, str) else ""
    if name in _EMAIL_FIELDS:
        return mask_email(value)
    if name in _PHONE_FIELDS:
        return mask_phone(value)
    return value


class _Mode(Enum):
    """How leaves below the current key are treated."""

    PLAIN = "plain"
    PHONE = "phone"


def _key_mode(key: object, mode: _Mode) -> _Mode | None:
    """Mode for the value under ``key``; None means the value is a secret."""
    if isinstance(key, str | int | float) and not isinstance(key, bool):
        kind = _key_kind(str(key))
        if kind == "secret":
            return None
        if kind == "phone":
            return _Mode.PHONE
    return mode


@lru_cache(maxsize=4096)
def _key_kind(key: str) -> str:
    # The same few dozen keys come with every callback: classify each once.
    normalized = re.sub(r"[^0-9a-z]", "", key.lower())
    if any(part in normalized for part in _SECRET_KEY_PARTS):
        return "secret"
    if any(part in normalized for part in _PHONE_KEY_PARTS):
        return "phone"
    return "plain"


def _mask_emails_in(text: str) -> str:
    if "@" not in text:
        return text
    return _EMAIL_RE.sub(lambda match: mask_email(match.group(0)) or _FULL_MASK, text)


def _redact_leaf(value: Any, mode: _Mode) -> Any:
    if mode is _Mode.PHONE:
        if isinstance(value, str):
            return mask_phone(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # Digits that came through JSON as a number are still a phone number.
            return mask_phone(str(value))
        return value
    if isinstance(value, str):
        return _mask_emails_in(value)
    return value


def redact_mapping(obj: Any) -> Any:
    """Return a masked deep copy of a JSON-like value, for logging.

    - Strings anywhere that contain email addresses have each address
      email-masked (also inside longer text such as error messages).
    - Every value below a key whose name, lowercased with non-alphanumerics
      removed, contains "phone", "mobile", "tel" or "cell" is phone-masked,
      including numbers and values nested in lists or objects.
    - Everything below a key containing "secret", "token", "signature",
      "authorization", "password", "apikey", "cookie" or "credential"
      becomes ``"[redacted]"``.

    Dict keys are kept as they are; tuples come back as lists. Values that are
    not JSON types are returned untouched. Never raises, however deep the
    nesting (the walk is iterative) or even if the structure is cyclic.
    """
    holder: list[Any] = [None]
    # (value, mode, container to write into, slot in that container)
    stack: list[tuple[Any, _Mode, Any, Any]] = [(obj, _Mode.PLAIN, holder, 0)]
    copies: dict[tuple[int, _Mode], Any] = {}
    while stack:
        value, mode, parent, slot = stack.pop()
        if isinstance(value, dict | list | tuple):
            memo_key = (id(value), mode)
            if memo_key in copies:
                parent[slot] = copies[memo_key]
                continue
            if isinstance(value, dict):
                new_dict: dict[Any, Any] = {}
                copies[memo_key] = parent[slot] = new_dict
                for key, child in value.items():
                    child_mode = _key_mode(key, mode)
                    if child_mode is None:
                        new_dict[key] = _REDACTED
                    else:
                        new_dict[key] = None
                        stack.append((child, child_mode, new_dict, key))
            else:
                new_list: list[Any] = [None] * len(value)
                copies[memo_key] = parent[slot] = new_list
                stack.extend((child, mode, new_list, index) for index, child in enumerate(value))
        else:
            parent[slot] = _redact_leaf(value, mode)
    return holder[0]
