"""How we read the callbacks Clay's HTTP API action sends: every shape people configure."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clayloop.clay.aliases import (
    CALLBACK_TOKEN_KEYS,
    CONTAINER_KEYS,
    EMAIL_KEYS,
    KIND_KEYS,
    KIND_SYNONYMS,
    LEAD_ID_KEYS,
    LINKEDIN_VALUE_KEYS,
    MESSAGE_KEYS,
    PHONE_VALUE_KEYS,
    REQUEST_ID_KEYS,
    STATUS_KEYS,
    STATUS_SYNONYMS,
    SUCCESS_KEYS,
    normalize_key,
)
from clayloop.clay.payloads import (
    CallbackError,
    CallbackFields,
    Decision,
    Kind,
    Outcome,
    decide,
    extract_callback,
)

PHONE = "+14155550132"
OTHER_PHONE = "+14155550199"
PROFILE = "https://www.linkedin.com/in/ada-lovelace"
OTHER_PROFILE = "https://www.linkedin.com/in/charles-babbage"


def refused(body: dict[str, Any]) -> CallbackError:
    with pytest.raises(CallbackError) as info:
        extract_callback(body)
    return info.value


def outcome_of(body: dict[str, Any], kind: Kind) -> Decision:
    return decide(extract_callback(body), kind)


def respellings(snake: str) -> list[str]:
    """The ways people type one snake_case name in a Clay body."""
    words = snake.split("_")
    return [
        snake,
        words[0] + "".join(w.capitalize() for w in words[1:]),  # camelCase
        " ".join(w.capitalize() for w in words),  # Title Case
        "-".join(words),
        ".".join(w.upper() for w in words),
    ]


# --- The recommended body --------------------------------------------------------------------


def test_the_recommended_linkedin_callback_fills_the_profile() -> None:
    body = {
        "request_id": "req_1",
        "lead_id": "lead_1",
        "enrichment_type": "linkedin",
        "callback_token": "tok_1",
        "success": True,
        "linkedin_url": "linkedin.com/in/ada-lovelace/",
    }
    fields = extract_callback(body)
    assert fields == CallbackFields(
        request_id="req_1",
        lead_id="lead_1",
        callback_token="tok_1",
        kind="linkedin",
        kind_declared=True,
        email=None,
        linkedin_raw="linkedin.com/in/ada-lovelace/",
        phone_raw=None,
        has_linkedin_key=True,
        has_phone_key=False,
        status=None,
        success=True,
        message=None,
    )
    assert decide(fields, "linkedin") == Decision("enriched", PROFILE, None, None)


def test_a_callback_with_success_true_and_no_status_fills_the_phone() -> None:
    body = {"request_id": "r", "success": True, "phone": "(415) 555-0132"}
    assert outcome_of(body, "phone") == Decision("enriched", PHONE, None, None)


def test_a_phone_without_country_code_is_read_in_the_workspace_region() -> None:
    fields = extract_callback({"success": True, "phone": "020 7946 0958"})
    assert decide(fields, "phone", region="GB").value == "+442079460958"
    assert decide(fields, "phone").reason == "invalid_value"


# --- Key matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "lead_id",
        "leadId",
        "Lead ID",
        "lead-id",
        "LEAD.ID",
        "LeadId",
        " lead id ",
        "clayloop_lead_id",
    ],
)
def test_lead_id_is_found_however_the_key_is_spelled(key: str) -> None:
    assert extract_callback({key: "lead_7"}).lead_id == "lead_7"


@pytest.mark.parametrize(
    "key",
    [
        "request_id",
        "requestId",
        "Request ID",
        "REQUEST-ID",
        "clayloop_request_id",
        "clayloopRequestId",
    ],
)
def test_request_id_is_found_however_the_key_is_spelled(key: str) -> None:
    assert extract_callback({key: "req_7"}).request_id == "req_7"


@pytest.mark.parametrize(
    "key", ["callback_token", "callbackToken", "Callback Token", "CALLBACK-TOKEN"]
)
def test_callback_token_is_found_however_the_key_is_spelled(key: str) -> None:
    assert extract_callback({key: "tok"}).callback_token == "tok"


@pytest.mark.parametrize("key", ["token", "api_token", "auth_token", "x-clay-webhook-auth"])
def test_a_bare_token_is_not_taken_for_the_callback_token(key: str) -> None:
    assert extract_callback({key: "tok"}).callback_token is None


@pytest.mark.parametrize("key", ["email", "Email", "email_address", "Work Email", "personEmail"])
def test_the_email_hint_is_kept_trimmed_but_not_normalized(key: str) -> None:
    assert extract_callback({key: "  Ada@Example.com "}).email == "Ada@Example.com"


def test_normalize_key_drops_case_and_every_separator() -> None:
    for spelling in ["lead_id", "leadId", "Lead ID", "lead-id", "LEAD.ID", "lead/id", "(lead id)"]:
        assert normalize_key(spelling) == "leadid"


def test_the_alias_tables_do_not_overlap() -> None:
    assert not set(LINKEDIN_VALUE_KEYS) & set(PHONE_VALUE_KEYS)
    id_keys = {*REQUEST_ID_KEYS, *LEAD_ID_KEYS, *CALLBACK_TOKEN_KEYS, *EMAIL_KEYS}
    other_keys = {*KIND_KEYS, *STATUS_KEYS, *SUCCESS_KEYS, *MESSAGE_KEYS, *CONTAINER_KEYS}
    value_keys = {*LINKEDIN_VALUE_KEYS, *PHONE_VALUE_KEYS}
    assert not id_keys & other_keys
    assert not id_keys & value_keys
    assert not other_keys & value_keys


# --- Ids ---------------------------------------------------------------------------------------


def test_ids_are_trimmed_strings_or_ints() -> None:
    fields = extract_callback({"request_id": "  req_1\n", "lead_id": 42, "callback_token": 7})
    assert (fields.request_id, fields.lead_id, fields.callback_token) == ("req_1", "42", "7")


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "null", "None", "N/A", "undefined", "-", "{{request_id}}", "#{{Request ID}}"],
)
def test_a_placeholder_id_is_no_id(value: object) -> None:
    assert extract_callback({"request_id": value}).request_id is None


@pytest.mark.parametrize("value", [True, False, 1.5, 3.0, ["req_1"], {"id": "req_1"}])
def test_an_id_of_another_type_is_no_id(value: object) -> None:
    assert extract_callback({"request_id": value}).request_id is None


def test_an_id_longer_than_200_characters_is_no_id() -> None:
    assert extract_callback({"lead_id": "x" * 200}).lead_id == "x" * 200
    assert extract_callback({"lead_id": "x" * 201}).lead_id is None
    assert extract_callback({"lead_id": 10**300}).lead_id is None


def test_a_placeholder_id_at_the_top_falls_back_to_a_real_one_nested() -> None:
    assert extract_callback({"request_id": "", "data": {"request_id": "req_9"}}).request_id == (
        "req_9"
    )


# --- Kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "linkedin",
        "LinkedIn",
        "linkedin_url",
        "LinkedIn URL",
        "li",
        "LI",
        "linkedin_profile",
        "linkedinProfileUrl",
        "person_linkedin_url",
    ],
)
def test_linkedin_kind_synonyms(value: str) -> None:
    assert extract_callback({"enrichment_type": value}).kind == "linkedin"


@pytest.mark.parametrize(
    "value",
    [
        "phone",
        "Phone",
        "mobile",
        "phone_number",
        "mobile_phone",
        "Mobile Phone",
        "cell",
        "cellphone",
        "Cell-Phone",
        "direct_dial",
        "telephone",
    ],
)
def test_phone_kind_synonyms(value: str) -> None:
    assert extract_callback({"enrichment_type": value}).kind == "phone"


@pytest.mark.parametrize(
    "key", ["enrichment_type", "enrichmentType", "Enrichment Type", "type", "kind"]
)
def test_the_kind_is_read_from_any_of_its_keys(key: str) -> None:
    assert extract_callback({key: "phone"}).kind == "phone"


def test_every_kind_synonym_maps_to_a_kind() -> None:
    for synonym, kind in KIND_SYNONYMS.items():
        assert extract_callback({"kind": synonym}).kind == kind


@pytest.mark.parametrize("value", ["email", "company", "work", "phone2x", "linked in profile page"])
def test_an_unknown_kind_is_refused_naming_it_and_the_accepted_kinds(value: str) -> None:
    error = refused({"enrichment_type": value, "success": True})
    assert (error.status, error.code) == (422, "unknown_kind")
    assert repr(value) in error.detail
    assert "'linkedin'" in error.detail and "'phone'" in error.detail


@pytest.mark.parametrize("value", [3, True, ["phone"], {"name": "phone"}])
def test_a_kind_that_is_not_a_string_is_refused(value: object) -> None:
    assert refused({"kind": value}).code == "unknown_kind"


@pytest.mark.parametrize("value", [None, "", " ", "N/A", "null", "{{enrichment_type}}"])
def test_a_placeholder_kind_is_no_kind(value: object) -> None:
    assert extract_callback({"enrichment_type": value}).kind is None


def test_enrichment_type_beats_a_plain_type_key() -> None:
    assert extract_callback({"type": "linkedin", "enrichment_type": "phone"}).kind == "phone"


def test_without_a_declared_kind_the_only_value_key_names_it() -> None:
    assert extract_callback({"mobile_phone": PHONE}).kind == "phone"
    assert extract_callback({"LinkedIn URL": PROFILE}).kind == "linkedin"
    # Even a placeholder value: the key is what the Clay column was set up for.
    assert extract_callback({"phone": ""}).kind == "phone"


def test_without_a_declared_kind_both_or_neither_value_keys_leave_the_kind_open() -> None:
    assert extract_callback({"phone": PHONE, "linkedin_url": PROFILE}).kind is None
    assert extract_callback({"request_id": "r", "success": False}).kind is None


def test_a_declared_kind_wins_over_the_value_keys_present() -> None:
    fields = extract_callback(
        {"enrichment_type": "phone", "success": True, "linkedin_url": PROFILE}
    )
    assert fields.kind == "phone"
    # The caller decides with the kind it trusts; each reading is well defined.
    assert decide(fields, "phone") == Decision("not_found", None, "empty_value", None)
    assert decide(fields, "linkedin") == Decision("enriched", PROFILE, None, None)


# --- Status -----------------------------------------------------------------------------------

STATUS_EXAMPLES: list[tuple[str, Outcome]] = [
    *[
        (word, "enriched")
        for word in [
            "success",
            "succeeded",
            "successful",
            "found",
            "enriched",
            "complete",
            "completed",
            "ok",
            "done",
            "SUCCESS",
            " Found ",
            "OK",
        ]
    ],
    *[
        (word, "not_found")
        for word in [
            "not_found",
            "not found",
            "notfound",
            "NOT_FOUND",
            "Not-Found",
            "no_match",
            "no match",
            "no result",
            "no_result",
            "no results",
            "empty",
            "none found",
            "missing",
        ]
    ],
    *[
        (word, "failed")
        for word in ["error", "failed", "failure", "fail", "errored", "ERROR", "Failed"]
    ],
]


@pytest.mark.parametrize(("word", "outcome"), STATUS_EXAMPLES)
def test_status_synonyms(word: str, outcome: Outcome) -> None:
    assert extract_callback({"status": word}).status == outcome


@pytest.mark.parametrize(
    "key", ["status", "Status", "result_status", "enrichmentStatus", "Enrichment Status", "outcome"]
)
def test_the_status_is_read_from_any_of_its_keys(key: str) -> None:
    assert extract_callback({key: "no match"}).status == "not_found"


def test_every_status_synonym_in_the_table_is_understood() -> None:
    for synonym, outcome in STATUS_SYNONYMS.items():
        assert extract_callback({"status": synonym}).status == outcome


def test_an_unknown_status_is_refused_with_the_value_quoted() -> None:
    error = refused({"status": "pending"})
    assert (error.status, error.code) == (422, "unknown_status")
    assert "'pending'" in error.detail


def test_an_unknown_status_is_quoted_truncated_to_100_characters() -> None:
    error = refused({"status": "x" * 150})
    assert repr("x" * 100) in error.detail
    assert "x" * 101 not in error.detail


@pytest.mark.parametrize("value", [200, True, ["found"], {"code": "found"}])
def test_a_status_that_is_not_a_string_is_refused(value: object) -> None:
    assert refused({"status": value}).code == "unknown_status"


@pytest.mark.parametrize("value", [None, "", "  ", "N/A", "null", "none", "{{Status}}"])
def test_a_placeholder_status_counts_as_absent(value: object) -> None:
    fields = extract_callback({"status": value, "success": False})
    assert fields.status is None
    assert fields.success is False


def test_a_placeholder_status_falls_back_to_a_real_one_under_another_key() -> None:
    assert extract_callback({"status": "", "result_status": "found"}).status == "enriched"


# --- Success flag -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [True, "true", "TRUE", " True ", 1, "1", "yes", "YES", "y", "Y", 1.0]
)
def test_success_flag_true_spellings(value: object) -> None:
    assert extract_callback({"success": value}).success is True


@pytest.mark.parametrize(
    "value", [False, "false", "False", "\tfalse\n", 0, "0", "no", "No", "n", 0.0]
)
def test_success_flag_false_spellings(value: object) -> None:
    assert extract_callback({"success": value}).success is False


@pytest.mark.parametrize("key", ["success", "Success", "ok", "OK", "found", "is_success"])
def test_the_success_flag_is_read_from_any_of_its_keys(key: str) -> None:
    assert extract_callback({key: "yes"}).success is True


@pytest.mark.parametrize("value", ["maybe", "2", 2, -1, 0.5, "truthy", ["true"], {"value": True}])
def test_an_unreadable_success_flag_is_refused(value: object) -> None:
    error = refused({"success": value})
    assert (error.status, error.code) == (422, "invalid_success")


@pytest.mark.parametrize("value", [None, "", "null", "N/A", "{{success}}"])
def test_a_placeholder_success_flag_counts_as_absent(value: object) -> None:
    assert extract_callback({"success": value}).success is None


# --- Message ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["error", "Error", "message", "reason", "error_message", "errorMessage"]
)
def test_clays_message_is_read_from_any_of_its_keys(key: str) -> None:
    assert extract_callback({key: " Out of credits "}).message == "Out of credits"


def test_the_error_key_wins_over_message() -> None:
    assert extract_callback({"message": "see error", "error": "Rate limited"}).message == (
        "Rate limited"
    )


def test_a_placeholder_message_gives_way_to_the_next_string() -> None:
    assert extract_callback({"error": "", "message": None, "reason": "No credits"}).message == (
        "No credits"
    )


def test_an_error_object_gives_its_message() -> None:
    body = {"error": {"code": 429, "message": "Too many requests"}}
    assert extract_callback(body).message == "Too many requests"


def test_an_error_flag_without_text_is_no_message() -> None:
    assert extract_callback({"error": True}).message is None


def test_a_long_message_is_truncated_to_500_characters() -> None:
    assert extract_callback({"error": "e" * 900}).message == "e" * 500


# --- Values: aliases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        spelling
        for alias in [
            "linkedin_url",
            "linkedin",
            "linkedin_profile",
            "linkedin_profile_url",
            "profile_url",
            "person_linkedin_url",
            "linkedin_person_url",
            "li_url",
            "linkedin_link",
            "url_linkedin",
            "linkedin_handle_url",
            "found_linkedin_url",
            "enriched_linkedin_url",
        ]
        for spelling in respellings(alias)
    ]
    + [
        "LinkedIn URL",
        "LinkedIn Profile",
        "Person LinkedIn URL",
        "LinkedIn Profile URL",
        "linkedinurl",
    ],
)
def test_linkedin_value_aliases(key: str) -> None:
    fields = extract_callback({key: "https://linkedin.com/in/ada-lovelace?trk=x"})
    assert fields.has_linkedin_key and not fields.has_phone_key
    assert decide(fields, "linkedin") == Decision("enriched", PROFILE, None, None)


@pytest.mark.parametrize(
    "key",
    [
        spelling
        for alias in [
            "phone",
            "phone_number",
            "mobile",
            "mobile_phone",
            "mobile_number",
            "mobile_phone_number",
            "direct_phone",
            "direct_dial",
            "work_phone",
            "cell",
            "cell_phone",
            "cellphone",
            "personal_phone",
            "telephone",
            "tel",
            "contact_phone",
            "found_phone",
            "enriched_phone",
        ]
        for spelling in respellings(alias)
    ]
    + ["Mobile Phone", "Phone Number", "Direct Phone", "PhoneNumber"],
)
def test_phone_value_aliases(key: str) -> None:
    fields = extract_callback({key: "+1 (415) 555-0132"})
    assert fields.has_phone_key and not fields.has_linkedin_key
    assert decide(fields, "phone") == Decision("enriched", PHONE, None, None)


@pytest.mark.parametrize(
    ("kind", "aliases"), [("linkedin", LINKEDIN_VALUE_KEYS), ("phone", PHONE_VALUE_KEYS)]
)
def test_every_alias_in_the_tables_is_read(kind: Kind, aliases: tuple[str, ...]) -> None:
    value = PROFILE if kind == "linkedin" else PHONE
    for alias in aliases:
        assert outcome_of({alias: value}, kind) == Decision("enriched", value, None, None)


def test_a_found_phone_beats_the_echoed_input_phone() -> None:
    body = {"phone": OTHER_PHONE, "found_phone": PHONE, "success": True}
    assert outcome_of(body, "phone").value == PHONE


def test_a_mobile_phone_beats_a_work_phone_whatever_the_key_order() -> None:
    body = {"work_phone": OTHER_PHONE, "mobile_phone": PHONE}
    assert outcome_of(body, "phone").value == PHONE


def test_a_placeholder_under_a_better_alias_gives_way_to_a_real_value() -> None:
    fields = extract_callback({"mobile_phone": "N/A", "phone": PHONE})
    assert fields.phone_raw == PHONE
    assert decide(fields, "phone").value == PHONE


def test_when_every_alias_holds_a_placeholder_the_first_is_kept_and_no_value_results() -> None:
    fields = extract_callback({"mobile_phone": "N/A", "phone": "", "success": True})
    assert fields.has_phone_key and fields.phone_raw == "N/A"
    assert decide(fields, "phone") == Decision("not_found", None, "empty_value", None)


def test_two_spellings_of_one_alias_keep_body_order() -> None:
    body = {"linkedin_url": "", "LinkedIn URL": OTHER_PROFILE, "linkedinUrl": PROFILE}
    assert outcome_of(body, "linkedin").value == OTHER_PROFILE


def test_a_bare_url_key_is_not_a_linkedin_value() -> None:
    fields = extract_callback({"url": PROFILE, "callback_url": "https://svc.example.com/cb"})
    assert not fields.has_linkedin_key


# --- Values: shapes ---------------------------------------------------------------------------


def test_an_int_phone_is_read_as_digits() -> None:
    assert outcome_of({"phone": 14155550132}, "phone").value == PHONE
    assert outcome_of({"phone": 4155550132}, "phone").value == PHONE


def test_a_phone_that_went_through_a_spreadsheet_as_a_float_is_read_as_digits() -> None:
    assert outcome_of({"phone": 14155550132.0}, "phone").value == PHONE


def test_an_array_gives_its_first_usable_element() -> None:
    body = {"phone_numbers": None, "phone": [None, "", "N/A", PHONE, OTHER_PHONE]}
    assert outcome_of(body, "phone").value == PHONE


def test_the_first_usable_element_decides_even_when_it_is_invalid() -> None:
    decision = outcome_of({"success": True, "phone": ["555", PHONE]}, "phone")
    assert decision == Decision("not_found", None, "invalid_value", "555")


@pytest.mark.parametrize("inner", ["value", "url", "number", "phone", "Value", "Phone Number"])
def test_an_object_gives_its_value_url_number_or_phone(inner: str) -> None:
    assert outcome_of({"mobile_phone": {inner: PHONE, "type": "mobile"}}, "phone").value == PHONE


def test_an_object_gives_the_linkedin_url_inside_it() -> None:
    body = {"linkedin": {"name": "Ada", "linkedin_url": PROFILE}}
    assert outcome_of(body, "linkedin").value == PROFILE


def test_objects_and_arrays_nest() -> None:
    body = {"phone": {"value": [{"number": ""}, {"number": {"value": 14155550132}}]}}
    assert outcome_of(body, "phone").value == PHONE


def test_a_value_buried_deeper_than_the_limit_is_no_value() -> None:
    value: object = PHONE
    for _ in range(6):
        value = {"value": value}
    assert outcome_of({"phone": value}, "phone") == Decision("not_found", None, "empty_value", None)


@pytest.mark.parametrize(
    "placeholder",
    [
        None,
        "",
        "   ",
        "null",
        "NULL",
        " None ",
        "none",
        "nil",
        "N/A",
        "n/a",
        "na",
        "NA",
        "undefined",
        "-",
        "--",
        "nan",
        "NaN",
        "[]",
        "{}",
        "{{Mobile Phone}}",
        "#{{phone}}",
        [],
        {},
        [None, "", "N/A"],
        {"value": "null"},
        True,
        False,
        float("nan"),
    ],
)
def test_placeholders_mean_no_value(placeholder: object) -> None:
    fields = extract_callback({"success": True, "phone": placeholder})
    assert fields.has_phone_key
    assert decide(fields, "phone") == Decision("not_found", None, "empty_value", None)


# --- Nested containers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "container", ["data", "result", "fields", "record", "body", "Data", "RESULT"]
)
def test_keys_are_found_inside_a_wrapping_object(container: str) -> None:
    body = {container: {"Request ID": "req_1", "success": "true", "Mobile Phone": PHONE}}
    fields = extract_callback(body)
    assert (fields.request_id, fields.success, fields.kind) == ("req_1", True, "phone")
    assert decide(fields, "phone").value == PHONE


def test_the_top_level_wins_over_a_wrapping_object() -> None:
    body = {
        "data": {"request_id": "inner", "phone": OTHER_PHONE},
        "request_id": "outer",
        "phone": PHONE,
    }
    fields = extract_callback(body)
    assert fields.request_id == "outer"
    assert decide(fields, "phone").value == PHONE


def test_the_top_level_wins_over_a_better_alias_nested() -> None:
    body = {"phone": PHONE, "data": {"found_phone": OTHER_PHONE}}
    assert outcome_of(body, "phone").value == PHONE


def test_a_shallower_wrapper_wins_over_a_deeper_one() -> None:
    body = {"data": {"result": {"lead_id": "deep"}}, "fields": {"lead_id": "shallow"}}
    assert extract_callback(body).lead_id == "shallow"


def test_wrappers_at_the_same_depth_keep_body_order() -> None:
    body = {"record": {"lead_id": "first"}, "data": {"lead_id": "second"}}
    assert extract_callback(body).lead_id == "first"


def test_wrappers_nest_up_to_five_levels() -> None:
    def wrapped(levels: int) -> dict[str, Any]:
        body: dict[str, Any] = {"lead_id": "deep"}
        for _ in range(levels):
            body = {"data": body}
        return body

    assert extract_callback(wrapped(5)).lead_id == "deep"
    assert extract_callback(wrapped(6)).lead_id is None


def test_other_objects_are_not_searched() -> None:
    fields = extract_callback(
        {"lead": {"lead_id": "x", "phone": PHONE}, "meta": {"status": "what"}}
    )
    assert fields.lead_id is None
    assert not fields.has_phone_key
    assert fields.status is None


def test_a_wrapper_holding_an_array_is_not_searched() -> None:
    assert extract_callback({"data": [{"lead_id": "x"}]}).lead_id is None


def test_a_status_in_a_wrapper_is_refused_like_one_at_the_top() -> None:
    assert refused({"data": {"status": "queued"}}).code == "unknown_status"


# --- decide -----------------------------------------------------------------------------------


def test_a_callback_with_status_found_fills_the_linkedin_url() -> None:
    body = {"status": "found", "linkedin_url": "http://uk.linkedin.com/in/ada-lovelace/en"}
    assert outcome_of(body, "linkedin") == Decision("enriched", PROFILE, None, None)


def test_a_callback_with_no_status_and_no_flag_is_enriched_when_it_has_a_value() -> None:
    assert outcome_of({"phone": PHONE}, "phone") == Decision("enriched", PHONE, None, None)


def test_a_callback_with_no_status_no_flag_and_no_value_is_not_found_empty() -> None:
    assert outcome_of({"request_id": "r"}, "phone") == Decision(
        "not_found", None, "empty_value", None
    )
    assert outcome_of({"phone": "N/A", "error": "whatever"}, "phone").reason == "empty_value"


def test_a_success_callback_without_a_value_is_not_found_empty() -> None:
    assert outcome_of({"success": True, "phone": ""}, "phone") == Decision(
        "not_found", None, "empty_value", None
    )
    assert outcome_of({"status": "completed"}, "linkedin") == Decision(
        "not_found", None, "empty_value", None
    )


def test_a_company_page_is_not_a_profile() -> None:
    body = {"success": True, "linkedin_url": "https://www.linkedin.com/company/acme"}
    assert outcome_of(body, "linkedin") == Decision(
        "not_found", None, "invalid_value", "https://www.linkedin.com/company/acme"
    )


def test_an_impossible_number_is_not_a_phone() -> None:
    assert outcome_of({"status": "ok", "phone": "+1 999 555 0132"}, "phone") == Decision(
        "not_found", None, "invalid_value", "+1 999 555 0132"
    )


def test_an_int_in_a_linkedin_field_is_an_invalid_value() -> None:
    assert outcome_of({"success": True, "linkedin_url": 12345}, "linkedin") == Decision(
        "not_found", None, "invalid_value", "12345"
    )


def test_a_rejected_raw_value_is_truncated_to_500_characters() -> None:
    decision = outcome_of({"success": True, "phone": "9" * 5000}, "phone")
    assert decision.reason == "invalid_value"
    assert decision.raw_value == "9" * 500


def test_a_rejected_huge_int_is_journalled_without_printing_it() -> None:
    decision = outcome_of({"success": True, "phone": 10**5000}, "phone")
    assert decision == Decision("not_found", None, "invalid_value", "<integer too large>")


def test_success_false_with_a_message_is_a_failure_with_clays_message() -> None:
    body = {"success": False, "error": "Provider timed out"}
    assert outcome_of(body, "phone") == Decision("failed", None, "Provider timed out", None)


def test_success_false_without_a_message_is_not_found() -> None:
    assert outcome_of({"success": "false"}, "phone") == Decision("not_found", None, None, None)


def test_status_failed_without_a_message_has_reason_error() -> None:
    assert outcome_of({"status": "failed"}, "linkedin") == Decision("failed", None, "error", None)


def test_status_not_found_carries_clays_message_if_any() -> None:
    assert outcome_of({"status": "no match", "message": "No profile"}, "linkedin") == Decision(
        "not_found", None, "No profile", None
    )
    assert outcome_of({"status": "no match"}, "linkedin") == Decision("not_found", None, None, None)


def test_the_status_wins_over_the_success_flag_and_the_value() -> None:
    body = {"status": "not_found", "success": True, "phone": PHONE}
    assert outcome_of(body, "phone") == Decision("not_found", None, None, None)
    body = {"status": "error", "success": True, "phone": PHONE, "reason": "Bounced"}
    assert outcome_of(body, "phone") == Decision("failed", None, "Bounced", None)


def test_success_true_wins_over_an_error_message() -> None:
    body = {"success": True, "phone": PHONE, "error": "partial"}
    assert outcome_of(body, "phone") == Decision("enriched", PHONE, None, None)


def test_decide_reads_only_the_value_of_the_kind_asked_for() -> None:
    fields = extract_callback({"success": True, "phone": PHONE, "linkedin_url": PROFILE})
    assert decide(fields, "phone").value == PHONE
    assert decide(fields, "linkedin").value == PROFILE


def test_a_body_that_is_not_an_object_is_refused() -> None:
    error = refused([{"phone": PHONE}])  # type: ignore[arg-type]
    assert (error.status, error.code) == (422, "invalid_body")


# --- Properties -------------------------------------------------------------------------------

_ALIAS_KEYS = sorted(
    {
        *REQUEST_ID_KEYS,
        *LEAD_ID_KEYS,
        *CALLBACK_TOKEN_KEYS,
        *EMAIL_KEYS,
        *KIND_KEYS,
        *STATUS_KEYS,
        *SUCCESS_KEYS,
        *MESSAGE_KEYS,
        *CONTAINER_KEYS,
        *LINKEDIN_VALUE_KEYS,
        *PHONE_VALUE_KEYS,
        "value",
        "url",
        "number",
    }
)
_INTERESTING_TEXT = [
    PHONE,
    "(415) 555-0132",
    PROFILE,
    "linkedin.com/company/acme",
    "N/A",
    "",
    "true",
    "no",
    "found",
    "not found",
    "error",
    "phone",
    "LinkedIn URL",
    "{{x}}",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**9, max_value=10**15)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(_INTERESTING_TEXT)
)
json_keys = st.sampled_from(_ALIAS_KEYS) | st.text(max_size=15)


def json_values(
    scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=25,
    )


json_objects = st.dictionaries(json_keys, json_values(json_scalars, json_keys), max_size=8)


@settings(max_examples=400)
@given(json_objects)
def test_extract_raises_only_callback_errors_and_decide_never_raises(body: dict[str, Any]) -> None:
    try:
        fields = extract_callback(body)
    except CallbackError as error:
        assert error.status == 422
        assert error.code in {"unknown_kind", "unknown_status", "invalid_success"}
        return
    for kind in ("linkedin", "phone"):
        decision = decide(fields, kind)
        if decision.outcome == "enriched":
            assert decision.value is not None and decision.reason is None
        else:
            assert decision.value is None


@given(
    raw=json_values(json_scalars, json_keys),
    status=st.sampled_from([None, "enriched", "not_found", "failed"]),
    success=st.sampled_from([None, True, False]),
    message=st.none() | st.text(max_size=20),
    kind=st.sampled_from(["linkedin", "phone"]),
    region=st.sampled_from(["US", "GB", "", "ZZ", "us"]) | st.text(max_size=3),
)
def test_decide_never_raises(
    raw: object,
    status: Outcome | None,
    success: bool | None,
    message: str | None,
    kind: Kind,
    region: str,
) -> None:
    fields = CallbackFields(
        request_id=None,
        lead_id=None,
        callback_token=None,
        kind=None,
        kind_declared=False,
        email=None,
        linkedin_raw=raw,
        phone_raw=raw,
        has_linkedin_key=True,
        has_phone_key=True,
        status=status,
        success=success,
        message=message,
    )
    decision = decide(fields, kind, region)
    assert decision.outcome in {"enriched", "not_found", "failed"}
    if decision.raw_value is not None:
        assert len(decision.raw_value) <= 500


# Bodies whose keys are already normalized (so no two keys of one object collide), to be
# re-spelled with other case and separators.
_normalized_keys = st.sampled_from(_ALIAS_KEYS) | st.text(
    alphabet=string.ascii_lowercase + string.digits, max_size=10
)
_finite_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(_INTERESTING_TEXT)
)
normalized_bodies = st.dictionaries(
    _normalized_keys, json_values(_finite_scalars, _normalized_keys), max_size=8
)


def respell(data: st.DataObject, value: Any) -> Any:
    """``value`` with every object key re-typed: other letter case, separators sprinkled in."""
    if isinstance(value, list):
        return [respell(data, item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        chars = []
        for ch in key:
            chars.append(data.draw(st.sampled_from(["", "_", "-", " ", ".", "/"])))
            chars.append(ch.upper() if data.draw(st.booleans()) else ch)
        result["".join(chars)] = respell(data, item)
    return result


def _reading(body: dict[str, Any]) -> tuple[object, ...]:
    """Everything a callback says; raw values via decide, as their own keys get re-spelled."""
    try:
        fields = extract_callback(body)
    except CallbackError as error:
        return (error.code, error.detail)
    return (
        fields.request_id,
        fields.lead_id,
        fields.callback_token,
        fields.kind,
        fields.email,
        fields.has_linkedin_key,
        fields.has_phone_key,
        fields.status,
        fields.success,
        fields.message,
        decide(fields, "linkedin"),
        decide(fields, "phone"),
    )


@settings(max_examples=300)
@given(normalized_bodies, st.data())
def test_respelling_keys_does_not_change_what_a_callback_says(
    body: dict[str, Any], data: st.DataObject
) -> None:
    assert _reading(respell(data, body)) == _reading(body)
