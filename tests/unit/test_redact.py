"""Masking of personal data and secrets before logging."""

from __future__ import annotations

import copy
import json
from typing import Any

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clayloop.kit.redact import mask_email, mask_phone, mask_value, redact_mapping

# ---------------------------------------------------------------------------
# mask_email
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane@acme.com", "j***@acme.com"),
        ("j@acme.com", "j***@acme.com"),
        ("Jane.Doe+leads@sub.acme.co.uk", "J***@sub.acme.co.uk"),
        ("jürgen@münchen.de", "j***@münchen.de"),
        ("@acme.com", "***@acme.com"),
        ("jane@", "j***@"),
        # The last "@" separates the domain, so nothing after it is hidden
        # and nothing before it but the first character is shown.
        ("a@b@acme.com", "a***@acme.com"),
        ("jane", "***"),
        ("", "***"),
        ("not an email", "***"),
    ],
)
def test_an_email_keeps_its_first_character_and_domain(value: str, expected: str) -> None:
    assert mask_email(value) == expected


def test_a_missing_email_stays_missing() -> None:
    assert mask_email(None) is None


def test_the_star_count_does_not_reveal_the_local_part_length() -> None:
    assert mask_email("a" * 40 + "@acme.com") == mask_email("ab@acme.com")


# ---------------------------------------------------------------------------
# mask_phone
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+14155550132", "+1******0132"),
        ("+1 (415) 555-0132", "+1******0132"),
        ("+442079460958", "+44******0958"),
        ("+44 20 7946 0958", "+44******0958"),
        ("+4930901820", "+49****1820"),
        ("+390612345678", "+39******5678"),
        ("+8613800138000", "+86*******8000"),
        # Extensions are not shown.
        ("+1 415 555 0132 ext 22", "+1******0132"),
        # Not parseable as international: keep only the first digit.
        ("4155550132", "4*****0132"),
        ("(415) 555-0132", "4*****0132"),
        ("+999 123 456 789", "+9*******6789"),
        # Short or garbage.
        ("0132", "***"),
        ("12345", "***"),
        ("+1", "***"),
        ("", "***"),
        ("   ", "***"),
        ("n/a", "***"),
        ("call me on 415 555 0132", "***"),
        ("415 555 0132 x22", "***"),
        ("1" * 65, "***"),
    ],
)
def test_a_phone_keeps_country_code_and_last_four(value: str, expected: str) -> None:
    assert mask_phone(value) == expected


def test_a_missing_phone_stays_missing() -> None:
    assert mask_phone(None) is None


# ---------------------------------------------------------------------------
# mask_value
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("email", "jane@acme.com", "j***@acme.com"),
        ("alternate_email", "jane@acme.com", "j***@acme.com"),
        ("alternate_emails", "jane@acme.com", "j***@acme.com"),
        ("Email", "jane@acme.com", "j***@acme.com"),
        ("phone", "+14155550132", "+1******0132"),
        ("email", None, None),
        ("phone", None, None),
        ("first_name", "Jane", "Jane"),
        ("linkedin_url", "https://www.linkedin.com/in/jane", "https://www.linkedin.com/in/jane"),
        ("company", None, None),
    ],
)
def test_a_field_is_masked_by_its_name(field: str, value: str | None, expected: str | None) -> None:
    assert mask_value(field, value) == expected


# ---------------------------------------------------------------------------
# redact_mapping
# ---------------------------------------------------------------------------


def test_a_clay_callback_payload_is_masked_for_logging() -> None:
    payload = {
        "request_id": "r-1",
        "row": {
            "Work Email": "jane@acme.com",
            "mobilePhone": "+14155550132",
            "Direct Dial (Tel)": 14155550132,
            "phones": ["+442079460958", {"number": "+14155550132", "type": "work"}],
            "note": "bounced: jane@acme.com, cc john.doe@acme.co.uk.",
            "score": 0.9,
            "verified": True,
            "tags": None,
        },
        "headers": {
            "Authorization": "Bearer abc",
            "x-api-key": "k",
            "webhook-signature": "v1,xyz",
            "client_secret": {"nested": "value"},
            "refresh_token": None,
            "Password": "hunter2",
        },
    }
    original = copy.deepcopy(payload)

    assert redact_mapping(payload) == {
        "request_id": "r-1",
        "row": {
            "Work Email": "j***@acme.com",
            "mobilePhone": "+1******0132",
            "Direct Dial (Tel)": "1******0132",
            "phones": ["+44******0958", {"number": "+1******0132", "type": "***"}],
            "note": "bounced: j***@acme.com, cc j***@acme.co.uk.",
            "score": 0.9,
            "verified": True,
            "tags": None,
        },
        "headers": {
            "Authorization": "[redacted]",
            "x-api-key": "[redacted]",
            "webhook-signature": "[redacted]",
            "client_secret": "[redacted]",
            "refresh_token": "[redacted]",
            "Password": "[redacted]",
        },
    }
    assert payload == original, "the input must not be modified"


@pytest.mark.parametrize(
    "key",
    ["phone", "Phone_Number", "mobile", "TEL", "tel_no", "cell", "cellPhone", "home-telephone"],
)
def test_values_under_phone_keys_are_phone_masked(key: str) -> None:
    assert redact_mapping({key: "+14155550132"}) == {key: "+1******0132"}


@pytest.mark.parametrize(
    "key",
    ["secret", "api_key", "API-KEY", "apiKey", "token", "access_token", "signature", "password"],
)
def test_values_under_secret_keys_are_redacted(key: str) -> None:
    assert redact_mapping({key: "x", "other": "y"}) == {key: "[redacted]", "other": "y"}


def test_secret_keys_win_over_phone_keys() -> None:
    assert redact_mapping({"phone_token": "+14155550132"}) == {"phone_token": "[redacted]"}


def test_a_plain_string_or_list_is_handled_like_a_mapping_value() -> None:
    assert redact_mapping("jane@acme.com") == "j***@acme.com"
    assert redact_mapping(["jane@acme.com", 1, None]) == ["j***@acme.com", 1, None]
    assert redact_mapping(("jane@acme.com",)) == ["j***@acme.com"]
    assert redact_mapping(None) is None
    assert redact_mapping(3) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no address here", "no address here"),
        ("user jane@acme.com not found", "user j***@acme.com not found"),
        ("user 'jane@acme.com' not found", "user '***@acme.com' not found"),
        ("o'brien@acme.ie", "o***@acme.ie"),
        ("<jane@acme.com>", "<j***@acme.com>"),
        ("mailto:jane@acme.com", "mailto:j***@acme.com"),
        ("already j***@acme.com", "already j***@acme.com"),
        ("version 1.2@3.4", "version 1.2@3.4"),
        ("@handle", "@handle"),
    ],
)
def test_emails_inside_text_are_masked(text: str, expected: str) -> None:
    assert redact_mapping({"message": text}) == {"message": expected}


def test_non_json_values_pass_through_untouched() -> None:
    marker = object()
    assert redact_mapping({"x": marker, 1: "jane@acme.com"}) == {"x": marker, 1: "j***@acme.com"}


def test_deep_nesting_does_not_overflow_the_stack() -> None:
    deep: Any = "jane@acme.com"
    for _ in range(50_000):
        deep = {"a": [deep]}
    result = redact_mapping(deep)
    for _ in range(50_000):
        result = result["a"][0]
    assert result == "j***@acme.com"


def test_a_cyclic_structure_does_not_loop() -> None:
    cyclic: dict[str, Any] = {"email": "jane@acme.com"}
    cyclic["self"] = cyclic
    result = redact_mapping(cyclic)
    assert result["email"] == "j***@acme.com"
    assert result["self"] is result


def test_huge_strings_are_scanned_in_linear_time() -> None:
    adversarial = [
        "a" * 200_000 + "@",
        "a@" * 100_000,
        "a@" + "b." * 100_000,
        "." * 200_000 + "@b.c",
    ]
    assert redact_mapping(adversarial)[3].endswith("***@b.c")


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

PROPERTY = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])

any_text = st.text(max_size=3000)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.one_of(
                st.text(max_size=12),
                st.sampled_from(["email", "phone", "Mobile", "tel", "token", "apiKey", "notes"]),
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=40,
)


@PROPERTY
@given(st.one_of(any_text, st.none()))
def test_the_maskers_never_raise(value: str | None) -> None:
    masked_email = mask_email(value)
    masked_phone = mask_phone(value)
    for field in ("email", "alternate_emails", "phone", "name"):
        mask_value(field, value)
    if value is None:
        assert masked_email is None
        assert masked_phone is None
    else:
        assert isinstance(masked_email, str)
        assert isinstance(masked_phone, str)


@PROPERTY
@given(json_values)
def test_redaction_never_raises_and_keeps_the_json_shape(value: Any) -> None:
    result = redact_mapping(value)
    json.dumps(result)  # still serializable
    if isinstance(value, dict):
        assert isinstance(result, dict)
        assert result.keys() == value.keys()
    if isinstance(value, list):
        assert isinstance(result, list)
        assert len(result) == len(value)


@PROPERTY
@given(st.emails(), json_values, st.sampled_from(["note", "items", "email", "phone"]))
def test_no_full_email_address_survives_redaction(address: str, context: Any, key: str) -> None:
    # A local part of stars would survive as its own mask.
    assume(address.split("@")[0].strip("*"))
    payload = {"context": context, key: [f"contact {address} today", {"to": address}]}
    assert address not in json.dumps(redact_mapping(payload), ensure_ascii=False)


@PROPERTY
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
def test_a_valid_number_keeps_only_country_code_and_last_four(region: str) -> None:
    number = phonenumbers.example_number(region)
    if number is None:
        return
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    country = f"+{number.country_code}"
    masked = mask_phone(e164)
    assert masked is not None
    hidden = len(e164) - len(country) - 4
    if hidden < 1:
        # Niue and a few others have four-digit numbers: nothing could be hidden.
        assert masked == "***"
    else:
        assert masked == country + "*" * hidden + e164[-4:]
