"""Pure normalization of lead identifiers: email, phone, LinkedIn profile URL.

Every public function takes untrusted text (CSV cells, Clay payloads, API
bodies) and either returns one canonical form or raises :class:`InvalidValue`.
Nothing else escapes: library exceptions are translated here so callers can
catch a single error type and show its ``detail`` to a person.

Error details never echo an email address or phone number, because they end
up in API responses and logs.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import phonenumbers
from email_validator import EmailNotValidError, validate_email

__all__ = [
    "InvalidValue",
    "linkedin_match_key",
    "normalize_email",
    "normalize_linkedin_url",
    "normalize_phone",
]


class InvalidValue(ValueError):
    """A value that normalization rejects."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _trim(value: str) -> str:
    """Strip whitespace and invisible format characters from both ends.

    Pasted values often carry a byte-order mark (first cell of a CSV) or the
    bidi marks phones add around numbers; str.strip() keeps those.
    """
    start, end = 0, len(value)
    while start < end and _is_blank(value[start]):
        start += 1
    while end > start and _is_blank(value[end - 1]):
        end -= 1
    return value[start:end]


def _is_blank(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Cf"


# ---------------------------------------------------------------------------
# Email
# ---------------------------------------------------------------------------

_EMAIL_MAX_LEN = 254  # RFC 5321 path limit minus the angle brackets
_EMAIL_EXPECTED = "expected an address like name@example.com"


def _bad_email(problem: str) -> InvalidValue:
    return InvalidValue("invalid_email", f"{problem}; {_EMAIL_EXPECTED}.")


def _unwrap_pasted_email(value: str) -> str:
    """Strip ``<...>`` and ``mailto:`` in either nesting order."""
    if len(value) >= 2 and value[0] == "<" and value[-1] == ">":
        value = value[1:-1].strip()
    if value[:7].lower() == "mailto:":
        value = value[7:].strip()
    if len(value) >= 2 and value[0] == "<" and value[-1] == ">":
        value = value[1:-1].strip()
    return value


def normalize_email(raw: str) -> str:
    """Return the canonical (trimmed, lowercased) form of an email address.

    A ``mailto:`` prefix and surrounding ``<...>`` are removed first because
    people paste them from mail clients. Only a plain ``local@domain.tld``
    address is accepted: no display names, quoted local parts or IP-literal
    domains. Internationalized addresses are accepted; the domain comes back
    in its Unicode form (``xn--`` labels are decoded) so one mailbox has one
    spelling.

    Raises:
        InvalidValue: code ``invalid_email``.
    """
    if not isinstance(raw, str):
        raise _bad_email("the email address is not text")
    value = _unwrap_pasted_email(_trim(raw))
    if not value:
        raise _bad_email("the email address is blank")
    # Checked before validation so huge inputs cost nothing.
    if len(value) > _EMAIL_MAX_LEN:
        raise _bad_email(f"the email address is longer than {_EMAIL_MAX_LEN} characters")
    if "@" not in value:
        raise _bad_email("the email address has no @ sign")
    if any(ch.isspace() for ch in value):
        raise _bad_email("the email address contains whitespace")

    # Lowercasing the local part is not RFC-strict, but no mailbox provider we
    # send to treats case as significant, and it makes duplicates match.
    lowered = value.lower()
    try:
        result = validate_email(
            lowered,
            check_deliverability=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
        )
    except EmailNotValidError:
        # The library's messages can quote parts of the address, so they are
        # not passed on.
        raise _bad_email("the email address is not valid") from None
    # IDNA/NFC normalization can reintroduce uppercase in rare scripts; one
    # more lower() keeps the output a fixed point.
    normalized = str(result.normalized).lower()
    local, _, domain = normalized.rpartition("@")
    if not local or "." not in domain:
        raise _bad_email("the email address has no domain with a dot")
    if len(normalized) > _EMAIL_MAX_LEN:
        raise _bad_email(f"the email address is longer than {_EMAIL_MAX_LEN} characters")
    return normalized


# ---------------------------------------------------------------------------
# Phone
# ---------------------------------------------------------------------------

_PHONE_MAX_LEN = 64  # phonenumbers is slow on very long input; no real number is this long
_PHONE_EXPECTED = "expected a number with its country code, like +1 415 555 0132"


def _bad_phone(problem: str) -> InvalidValue:
    return InvalidValue("invalid_phone", f"{problem}; {_PHONE_EXPECTED}.")


def _parse_valid(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """Parse ``text`` and return the number only if phonenumbers deems it valid."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return number


def normalize_phone(raw: str | int, region: str = "US") -> str:
    """Return the E.164 form (``+14155550132``) of a phone number.

    ``region`` is the ISO 3166 alpha-2 country assumed for numbers written
    without a country code. An unknown region is not an error: such numbers
    must then carry a leading ``+`` (or ``00``). Extensions are dropped, not
    appended. Both ``+`` and the ``00`` international prefix are understood
    whatever the region's own dialling prefix is.

    An ``int`` (a number that went through JSON) is read as digits; when it is
    not a valid national number of ``region`` it is tried as an international
    number, since spreadsheets strip the leading ``+``.

    Raises:
        InvalidValue: code ``invalid_phone``, also for numbers phonenumbers
            considers invalid (unassigned ranges, wrong length).
    """
    from_int = False
    if isinstance(raw, bool):  # bool is an int subclass; True is not a phone number
        raise _bad_phone("the phone number is not text or digits")
    if isinstance(raw, int):
        if raw <= 0:
            raise _bad_phone("the phone number is not a positive number")
        # Bound before str(): converting a huge int is itself slow.
        if raw.bit_length() > 4 * _PHONE_MAX_LEN:
            raise _bad_phone(f"the phone number is longer than {_PHONE_MAX_LEN} characters")
        text = str(raw)
        from_int = True
    elif isinstance(raw, str):
        # Format characters (bidi marks, zero-width spaces) are invisible and
        # carry nothing, so they go even from inside the number.
        text = "".join(ch for ch in _trim(raw) if unicodedata.category(ch) != "Cf")
    else:
        raise _bad_phone("the phone number is not text or digits")

    if not text:
        raise _bad_phone("the phone number is blank")
    if len(text) > _PHONE_MAX_LEN:
        raise _bad_phone(f"the phone number is longer than {_PHONE_MAX_LEN} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        # phonenumbers would skip them, but they mean the cell was mangled.
        raise _bad_phone("the phone number contains control characters")

    upper_region = region.strip().upper() if isinstance(region, str) else ""
    default_region = upper_region if upper_region in phonenumbers.SUPPORTED_REGIONS else None

    candidates = [text]
    # "00" is the international prefix in most of the world; phonenumbers only
    # honours it when the default region dials that way (not in the US).
    if text.startswith("00"):
        candidates.append("+" + text[2:])
    if from_int:
        candidates.append("+" + text)

    for candidate in candidates:
        number = _parse_valid(candidate, default_region)
        if number is not None:
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if default_region is None and not text.startswith(("+", "00")):
        raise _bad_phone("the phone number has no country code and no known default region")
    raise _bad_phone("the phone number is not a valid number")


# ---------------------------------------------------------------------------
# LinkedIn
# ---------------------------------------------------------------------------

_LINKEDIN_MAX_LEN = 2000
_LINKEDIN_BASE = "https://www.linkedin.com"
_LINKEDIN_EXPECTED = "expected a profile URL like https://www.linkedin.com/in/jane-doe"

# A URL scheme, but not "host:port" ("linkedin.com:443/in/x" has no scheme).
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(?![0-9])")
_HOST_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The three id segments of a legacy /pub/<name>/<a>/<b>/<c> profile.
_PUB_ID_RE = re.compile(r"[0-9A-Za-z]{1,4}")

# First path segment -> what kind of page it is, for error details.
_NON_PROFILE_KINDS: dict[str, str] = {
    "company": "a company page",
    "showcase": "a company showcase page",
    "school": "a school page",
    "edu": "a school page",
    "posts": "a post",
    "feed": "a feed post",
    "pulse": "an article",
    "sales": "a Sales Navigator page",
    "talent": "a LinkedIn Recruiter page",
    "recruiter": "a LinkedIn Recruiter page",
    "jobs": "a job page",
    "job": "a job page",
    "groups": "a group page",
    "events": "an event page",
    "learning": "a LinkedIn Learning page",
    "search": "a search results page",
    "messaging": "a messaging page",
    "mynetwork": "a My Network page",
    "newsletters": "a newsletter page",
    "services": "a services page",
    "products": "a product page",
}


def _bad_linkedin(problem: str) -> InvalidValue:
    return InvalidValue("invalid_linkedin_url", f"{problem}; {_LINKEDIN_EXPECTED}.")


def _not_a_profile(kind: str) -> InvalidValue:
    return _bad_linkedin(f"the URL is {kind}, not a person profile")


def _split_authority(value: str) -> tuple[str, str, str]:
    """Split ``value`` into (scheme, authority, rest) or raise.

    A missing scheme means https. Hand-rolled rather than urlsplit because
    urlsplit accepts things browsers read differently and raises its own
    ValueErrors on odd ports and brackets.
    """
    scheme_match = _SCHEME_RE.match(value)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme not in ("http", "https"):
            raise _bad_linkedin("the URL is not a web (http or https) address")
        rest = value[scheme_match.end() :]
        if not rest.startswith("//"):
            raise _bad_linkedin("the URL has no host after the scheme")
        rest = rest[2:]
    else:
        scheme = ""
        rest = value.removeprefix("//")
    cut = len(rest)
    for sep in "/?#":
        index = rest.find(sep)
        if index != -1:
            cut = min(cut, index)
    return scheme, rest[:cut], rest[cut:]


def _check_host(scheme: str, authority: str) -> None:
    """Accept only linkedin.com or its subdomains, on the default port."""
    if "@" in authority:
        # https://linkedin.com@evil.io/ is a login name for evil.io.
        raise _bad_linkedin("the URL contains a user name before the host")
    host, colon, port = authority.partition(":")
    if colon:
        allowed_ports = {"http": {"80"}, "https": {"443"}, "": {"80", "443"}}[scheme]
        if port not in allowed_ports:
            raise _bad_linkedin("the URL uses a non-standard port")
    host = host.lower()
    if not host:
        raise _bad_linkedin("the URL has no host")
    labels = host.split(".")
    valid_labels = host.isascii() and all(_HOST_LABEL_RE.fullmatch(label) for label in labels)
    if not valid_labels or labels[-2:] != ["linkedin", "com"]:
        raise _bad_linkedin("the URL is not on linkedin.com")


def _decode_segment(segment: str) -> str:
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise _bad_linkedin("the URL contains an invalid %-escape") from None
    # NFC so the composed and decomposed spellings of "ü" are one profile.
    return unicodedata.normalize("NFC", decoded)


def _valid_slug(slug: str) -> bool:
    """Letters (any script), combining marks, digits, '-', '_' and '.'.

    At least one letter or digit, which also rules out the dot segments
    "." and "..".
    """
    has_alnum = False
    for ch in slug:
        if ch.isalnum():
            has_alnum = True
        elif ch in "-_." or unicodedata.category(ch).startswith("M"):
            continue
        else:
            return False
    return has_alnum


def normalize_linkedin_url(raw: str) -> str:
    """Return the canonical URL of a LinkedIn person profile.

    The result is ``https://www.linkedin.com/in/<slug>``, or for legacy
    profiles ``https://www.linkedin.com/pub/<name>/<a>/<b>/<c>``. Scheme,
    ``www.``, country/mobile subdomains, default ports, query, fragment and
    trailing slashes are dropped; %-escapes are decoded and the slug is kept
    in Unicode NFC with its case as given.

    Everything after the slug of an ``/in/`` URL is dropped, whether it is a
    locale (``/en``, ``/pt-br``) or a sub-page (``/details/experience``): the
    slug alone identifies the person.

    Raises:
        InvalidValue: code ``invalid_linkedin_url`` for anything that is not a
            person profile on linkedin.com; the detail names the kind of page
            when it is recognised (company, school, post, Sales Navigator...).
    """
    if not isinstance(raw, str):
        raise _bad_linkedin("the LinkedIn URL is not text")
    value = _trim(raw)
    if not value:
        raise _bad_linkedin("the LinkedIn URL is blank")
    if len(value) > _LINKEDIN_MAX_LEN:
        raise _bad_linkedin(f"the LinkedIn URL is longer than {_LINKEDIN_MAX_LEN} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _bad_linkedin("the LinkedIn URL contains whitespace or control characters")
    if "\\" in value:
        # Browsers treat "\" as "/", which would move the host boundary.
        raise _bad_linkedin("the LinkedIn URL contains a backslash")

    scheme, authority, rest = _split_authority(value)
    _check_host(scheme, authority)

    path = re.split(r"[?#]", rest, maxsplit=1)[0]
    # Empty segments come from trailing or doubled slashes.
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        raise _bad_linkedin("the URL is the LinkedIn home page, not a person profile")
    kind = segments[0].lower()

    if kind == "in":
        if len(segments) < 2:
            raise _bad_linkedin("the URL has no profile name after /in/")
        slug = _decode_segment(segments[1])
        if not _valid_slug(slug):
            raise _bad_linkedin(
                "the profile name may only contain letters, digits, '-', '_' and '.'"
            )
        return f"{_LINKEDIN_BASE}/in/{slug}"

    if kind == "pub":
        if len(segments) < 2 or segments[1].lower() == "dir":
            raise _not_a_profile("a public directory page")
        name = _decode_segment(segments[1])
        ids = segments[2:5]
        if not _valid_slug(name) or len(ids) != 3 or not all(_PUB_ID_RE.fullmatch(i) for i in ids):
            raise _bad_linkedin("the legacy /pub/ URL must look like /pub/<name>/<a>/<b>/<c>")
        # Anything after the three ids is a locale, dropped like for /in/.
        return f"{_LINKEDIN_BASE}/pub/{name}/{'/'.join(ids)}"

    page_kind = _NON_PROFILE_KINDS.get(kind, "a LinkedIn page")
    raise _not_a_profile(page_kind)


def linkedin_match_key(canonical_url: str) -> str:
    """Return the key two profile URLs are compared by: the canonical URL, lowercased.

    LinkedIn slugs are case-insensitive, but the canonical URL keeps the case
    people typed, so matching and unique indexes use this key instead. The
    input is normalized first, so any accepted spelling of a profile URL gives
    the same key.

    Raises:
        InvalidValue: code ``invalid_linkedin_url``, as for
            :func:`normalize_linkedin_url`.
    """
    return normalize_linkedin_url(canonical_url).lower()
