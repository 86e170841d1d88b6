"""The vocabulary Clay callbacks are read with: key aliases, kind and status synonyms, placeholders.

Clay's HTTP API action is configured by hand, so people name the same field a dozen ways.
Every table here is written the way people type it; matching happens on the *normalized*
spelling (lowercase, every non-alphanumeric character removed), so ``linkedin_url``,
``LinkedIn URL``, ``linkedinUrl`` and ``linked-in.url`` are one alias. Within a table the
order is the priority: when a callback carries several aliases with a real value, the
earliest one in the table wins.

This module is the source for the "what can a callback look like" page in the docs; keep
the two in step.
"""

from __future__ import annotations

import re
from typing import Final, Literal

Kind = Literal["linkedin", "phone"]
Outcome = Literal["enriched", "not_found", "failed"]

_NON_ALNUM: Final = re.compile(r"[^0-9a-z]")


def normalize_key(key: str) -> str:
    """Lowercase ``key`` and drop every character that is not an ASCII letter or digit."""
    return _NON_ALNUM.sub("", key.lower())


def _normalized(*spellings: str) -> tuple[str, ...]:
    """Normalize ``spellings`` keeping first-seen order and dropping duplicates."""
    return tuple(dict.fromkeys(normalize_key(s) for s in spellings))


# --- Where keys are looked for ------------------------------------------------------------
# Top level first, then (breadth-first) inside objects held under these keys, e.g. Sim's
# Clay tool wraps everything as {"data": {...}}.
CONTAINER_KEYS: Final = _normalized("data", "result", "fields", "record", "body")
CONTAINER_MAX_DEPTH: Final = 5

# --- Identifiers (hints for the DB lookup) ------------------------------------------------
REQUEST_ID_KEYS: Final = _normalized("request_id", "clayloop_request_id", "enrichment_request_id")
LEAD_ID_KEYS: Final = _normalized("lead_id", "clayloop_lead_id")
# Deliberately not plain "token": Clay users also forward API tokens of other tools.
CALLBACK_TOKEN_KEYS: Final = _normalized("callback_token", "clayloop_callback_token")
EMAIL_KEYS: Final = _normalized(
    "email", "email_address", "work_email", "lead_email", "person_email", "contact_email"
)
ID_MAX_CHARS: Final = 200
EMAIL_MAX_CHARS: Final = 320

# --- Declared kind ------------------------------------------------------------------------
KIND_KEYS: Final = _normalized("enrichment_type", "clayloop_enrichment_type", "kind", "type")

# --- Outcome ------------------------------------------------------------------------------
STATUS_KEYS: Final = _normalized(
    "status", "result_status", "enrichment_status", "outcome", "enrichment_outcome"
)
SUCCESS_KEYS: Final = _normalized("success", "successful", "is_success", "ok", "found")
MESSAGE_KEYS: Final = _normalized(
    "error",
    "error_message",
    "message",
    "reason",
    "failure_reason",
    "error_detail",
    "detail",
)
# An error given as an object, e.g. {"error": {"message": "..."}}: read these inside it.
MESSAGE_INNER_KEYS: Final = _normalized("message", "detail", "reason", "error", "description")
MESSAGE_MAX_CHARS: Final = 500

STATUS_SYNONYMS: Final[dict[str, Outcome]] = {
    **dict.fromkeys(
        _normalized(
            "success",
            "succeeded",
            "successful",
            "found",
            "enriched",
            "complete",
            "completed",
            "ok",
            "done",
            "matched",
        ),
        "enriched",
    ),
    **dict.fromkeys(
        _normalized(
            "not_found",
            "no_match",
            "no_matches",
            "no_match_found",
            "no_result",
            "no_results",
            "no_results_found",
            "no_data",
            "empty",
            "none_found",
            "nothing_found",
            "missing",
            "unmatched",
        ),
        "not_found",
    ),
    **dict.fromkeys(
        _normalized("error", "errored", "failed", "failure", "fail", "timeout", "timed_out"),
        "failed",
    ),
}

SUCCESS_TRUE: Final = frozenset({"true", "1", "yes", "y"})
SUCCESS_FALSE: Final = frozenset({"false", "0", "no", "n"})

# --- Enriched values ----------------------------------------------------------------------
# Priority: names that say "this is the result" first, then the specific names, then the
# generic ones (which are also the names of the *input* columns we send to Clay, so an echoed
# input must not beat a found value).
LINKEDIN_VALUE_KEYS: Final = _normalized(
    "found_linkedin_url",
    "enriched_linkedin_url",
    "linkedin_url",  # also linkedinUrl, "LinkedIn URL", linked_in_url, ...
    "linkedin_profile_url",
    "person_linkedin_url",
    "linkedin_person_url",
    "contact_linkedin_url",
    "lead_linkedin_url",
    "linkedin_public_url",
    "public_linkedin_url",
    "linkedin_handle_url",
    "url_linkedin",
    "linkedin_link",
    "linkedin_profile_link",
    "li_url",
    "li_profile_url",
    "linkedin_profile",
    "person_linkedin",
    "linkedin",
    "profile_url",
)
PHONE_VALUE_KEYS: Final = _normalized(
    "found_phone",
    "enriched_phone",
    "mobile_phone",
    "mobile_phone_number",
    "mobile_number",
    "mobile",
    "personal_mobile",
    "cell_phone",  # also cellphone, "Cell Phone"
    "cell_number",
    "cell",
    "direct_phone",
    "direct_dial",
    "direct_number",
    "direct_line",
    "phone_number",
    "phone",
    "best_phone",
    "primary_phone",
    "personal_phone",
    "work_phone",
    "contact_phone",
    "telephone",
    "telephone_number",
    "tel",
)
VALUE_KEYS: Final[dict[Kind, tuple[str, ...]]] = {
    "linkedin": LINKEDIN_VALUE_KEYS,
    "phone": PHONE_VALUE_KEYS,
}
# A value given as an object, e.g. {"phone": {"number": "+1...", "type": "mobile"}}: read these
# inside it, then the kind's own value aliases.
VALUE_INNER_KEYS: Final = _normalized("value", "url", "number", "phone")
VALUE_MAX_DEPTH: Final = 5
VALUE_MAX_ITEMS: Final = 100  # array elements looked at per array
RAW_VALUE_MAX_CHARS: Final = 500

# --- Kind names (values of enrichment_type & co.) -----------------------------------------
# Any value alias also names its kind ("mobile_phone" -> phone, "LinkedIn URL" -> linkedin).
KIND_SYNONYMS: Final[dict[str, Kind]] = {
    **dict.fromkeys(_normalized("linkedin", "li", *LINKEDIN_VALUE_KEYS), "linkedin"),
    **dict.fromkeys(_normalized("phone", "cellphone", "mobile", *PHONE_VALUE_KEYS), "phone"),
}

# --- Placeholders -------------------------------------------------------------------------
# Strings (compared trimmed and case-insensitively) that mean "no value". Blank strings too.
PLACEHOLDER_STRINGS: Final = frozenset(
    {"null", "none", "nil", "n/a", "na", "undefined", "-", "--", "nan", "[]", "{}"}
)
# An unrendered Clay column token such as "{{Mobile Phone}}" or "#{{email}}" also means no value:
# a mistyped column reference may reach us as literal text, and it is never a real value.
TEMPLATE_TOKEN: Final = re.compile(r"#?\{\{.*\}\}", re.DOTALL)
