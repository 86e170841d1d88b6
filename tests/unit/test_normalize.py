"""Normalization of lead identifiers: examples first, then properties."""

from __future__ import annotations

from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clayloop.leads.normalize import (
    InvalidValue,
    linkedin_match_key,
    normalize_email,
    normalize_linkedin_url,
    normalize_phone,
)

# ---------------------------------------------------------------------------
# InvalidValue
# ---------------------------------------------------------------------------


def test_invalid_value_carries_code_and_detail_and_is_a_value_error() -> None:
    error = InvalidValue("invalid_email", "the email address is blank.")
    assert isinstance(error, ValueError)
    assert error.code == "invalid_email"
    assert error.detail == "the email address is blank."
    assert "invalid_email" in str(error)


# ---------------------------------------------------------------------------
# Email examples
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane@acme.com", "jane@acme.com"),
        ("Jane.Doe@Acme.COM", "jane.doe@acme.com"),
        ("  jane@acme.com\t\n", "jane@acme.com"),
        # A byte-order mark from the first cell of a CSV, a trailing zero-width space.
        ("\ufeffjane@acme.com\u200b", "jane@acme.com"),
        ("mailto:jane@acme.com", "jane@acme.com"),
        ("MAILTO:Jane@Acme.com", "jane@acme.com"),
        ("<jane@acme.com>", "jane@acme.com"),
        (" < jane@acme.com > ", "jane@acme.com"),
        ("<mailto:jane@acme.com>", "jane@acme.com"),
        ("mailto:<jane@acme.com>", "jane@acme.com"),
        ("jane+leads@acme.co.uk", "jane+leads@acme.co.uk"),
        ("first.last@sub.acme.io", "first.last@sub.acme.io"),
        ("o'brien@acme.ie", "o'brien@acme.ie"),
        ("jane@example.com", "jane@example.com"),
        ("a@x.co", "a@x.co"),
        # IDN domains come back in Unicode form, whichever way they were written.
        ("jane@MÜNCHEN.de", "jane@münchen.de"),
        ("jane@xn--mnchen-3ya.de", "jane@münchen.de"),
        ("jürgen@münchen.de", "jürgen@münchen.de"),
    ],
)
def test_a_valid_email_is_trimmed_and_lowercased(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "mailto:",
        "<>",
        "jane",
        "jane.acme.com",
        "jane@",
        "@acme.com",
        "jane@acme",
        "jane@localhost",
        "jane doe@acme.com",
        "jane@acme .com",
        "jane@@acme.com",
        "jane@acme..com",
        "jane..doe@acme.com",
        ".jane@acme.com",
        "jane.@acme.com",
        "jane@acme.com.",
        "jane@-acme.com",
        '"jane doe"@acme.com',
        '"jane"@acme.com',
        "jane@[192.168.0.1]",
        "jane@[IPv6:::1]",
        "jane@1.2.3.4",
        "Jane Doe <jane@acme.com>",
        "jane@acme.com, john@acme.com",
        "jane@acme.com;",
        "jane\x00@acme.com",
        "jane\u200b@acme.com",
        "jane@acme.test",
        "jane@acme.local",
        "a" * 250 + "@acme.com",
        "jane@" + "a" * 64 + ".com",
    ],
)
def test_an_invalid_email_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_email(raw)
    assert info.value.code == "invalid_email"
    assert info.value.detail


@pytest.mark.parametrize(
    "raw",
    ["secretperson@acme", "secret person@acme.com", "secretperson@acme.com extra", "secretperson"],
)
def test_an_email_error_detail_does_not_echo_the_address(raw: str) -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_email(raw)
    assert "secret" not in info.value.detail
    assert "acme" not in info.value.detail
    assert "expected" in info.value.detail


def test_an_email_of_exactly_254_characters_is_accepted() -> None:
    address = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    assert len(address) == 254
    assert normalize_email(address) == address


def test_an_email_over_254_characters_is_rejected() -> None:
    address = "a" * 64 + "@" + ".".join(["b" * 62] * 3) + ".com"
    assert len(address) > 254
    with pytest.raises(InvalidValue, match="longer than 254"):
        normalize_email(address)


@pytest.mark.parametrize("raw", [None, 42, b"jane@acme.com", ["jane@acme.com"]])
def test_a_non_text_email_raises_invalid_value_not_type_error(raw: object) -> None:
    with pytest.raises(InvalidValue):
        normalize_email(raw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Phone examples
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # The spec's own examples: 555-01xx is a valid (fictional-use) US range.
        ("+1 415 555 0132", "US", "+14155550132"),
        ("+14155550132", "US", "+14155550132"),
        ("415 555 0132", "US", "+14155550132"),
        ("(415) 555-0132", "US", "+14155550132"),
        ("415.555.0132", "US", "+14155550132"),
        ("1-415-555-0132", "US", "+14155550132"),
        ("  +1 (415) 555-0132  ", "US", "+14155550132"),
        # Android and WhatsApp wrap copied numbers in bidi marks.
        ("\u202a+1 415-555-0132\u202c", "US", "+14155550132"),
        ("+1\u200e 415 555 0132", "US", "+14155550132"),
        ("tel:+1-415-555-0132", "US", "+14155550132"),
        # Extensions are dropped, never glued onto the number.
        ("415 555 1234 ext 22", "US", "+14155551234"),
        ("415 555 1234 ext. 22", "US", "+14155551234"),
        ("415-555-1234 x22", "US", "+14155551234"),
        ("(415) 555-1234 #22", "US", "+14155551234"),
        ("+1 415 555 1234;ext=22", "US", "+14155551234"),
        ("+44 20 7946 0958 ext 7", "US", "+442079460958"),
        # The 00 international prefix works even where the region dials 011.
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("00 49 30 901820", "US", "+4930901820"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "gb", "+442079460958"),
        ("030 901820", "DE", "+4930901820"),
        ("+49 (0)30 901820", "US", "+4930901820"),
        # An unknown region is fine when the number is international.
        ("+44 20 7946 0958", "ZZ", "+442079460958"),
        ("0044 20 7946 0958", "XX", "+442079460958"),
        ("+14155550132", "", "+14155550132"),
        # Full-width digits from East Asian keyboards.
        (
            "\uff0b\uff11 \uff14\uff11\uff15 \uff15\uff15\uff15 \uff10\uff11\uff13\uff12",
            "US",
            "+14155550132",
        ),
    ],
)
def test_a_valid_phone_becomes_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


def test_the_default_region_is_us() -> None:
    assert normalize_phone("415 555 0132") == "+14155550132"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        (14155550132, "US", "+14155550132"),
        (4155550132, "US", "+14155550132"),
        # Too long to be a US national number, so read as international.
        (442079460958, "US", "+442079460958"),
        (442079460958, "GB", "+442079460958"),
        (2079460958, "GB", "+442079460958"),
        (14155550132, "ZZ", "+14155550132"),
    ],
)
def test_an_int_phone_from_json_is_read_as_digits(raw: int, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("", "US"),
        ("   ", "US"),
        ("n/a", "US"),
        ("call me", "US"),
        ("+", "US"),
        ("12", "US"),
        ("555 0132", "US"),
        ("+1 415 555 013", "US"),
        ("+1 415 555 01324", "US"),
        ("+1 000 555 0132", "US"),
        ("+999 123 456 789", "US"),
        ("4155550132", "ZZ"),
        ("4155550132", ""),
        ("1" * 65, "US"),
        ("+1" + " " * 60 + "4155550132", "US"),
        ("+1 415 555 0132\x00", "US"),
    ],
)
def test_an_invalid_phone_is_rejected(raw: str, region: str) -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_phone(raw, region)
    assert info.value.code == "invalid_phone"
    assert info.value.detail


@pytest.mark.parametrize("raw", [0, -14155550132, 10**70, True, False])
def test_an_unusable_int_phone_is_rejected(raw: int) -> None:
    with pytest.raises(InvalidValue):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", [None, 4.15e9, b"4155550132", ["4155550132"]])
def test_a_non_text_phone_raises_invalid_value_not_type_error(raw: object) -> None:
    with pytest.raises(InvalidValue):
        normalize_phone(raw)  # type: ignore[arg-type]


def test_a_non_text_region_is_treated_as_unknown() -> None:
    assert normalize_phone("+14155550132", None) == "+14155550132"  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        normalize_phone("4155550132", None)  # type: ignore[arg-type]


def test_a_phone_error_detail_does_not_echo_the_number() -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_phone("+1 415 987 01324")
    assert "987" not in info.value.detail
    assert "01324" not in info.value.detail


# ---------------------------------------------------------------------------
# LinkedIn examples
# ---------------------------------------------------------------------------

JANE = "https://www.linkedin.com/in/jane-doe"


@pytest.mark.parametrize(
    "raw",
    [
        "https://www.linkedin.com/in/jane-doe",
        "http://www.linkedin.com/in/jane-doe",
        "https://linkedin.com/in/jane-doe",
        "linkedin.com/in/jane-doe",
        "www.linkedin.com/in/jane-doe",
        "//www.linkedin.com/in/jane-doe",
        "HTTPS://WWW.LINKEDIN.COM/in/jane-doe",
        "https://WWW.LinkedIn.com/IN/jane-doe",
        "https://uk.linkedin.com/in/jane-doe",
        "https://de.linkedin.com/in/jane-doe",
        "https://m.linkedin.com/in/jane-doe",
        "https://www.linkedin.com:443/in/jane-doe",
        "http://www.linkedin.com:80/in/jane-doe",
        "linkedin.com:443/in/jane-doe",
        "  https://www.linkedin.com/in/jane-doe  ",
        "\ufeffhttps://www.linkedin.com/in/jane-doe\u200e",
        # Trailing slashes, queries, fragments, locales and sub-pages go.
        "https://www.linkedin.com/in/jane-doe/",
        "https://www.linkedin.com/in/jane-doe//",
        "https://www.linkedin.com//in//jane-doe",
        "https://www.linkedin.com/in/jane-doe/en",
        "https://www.linkedin.com/in/jane-doe/de/",
        "https://www.linkedin.com/in/jane-doe/pt-br",
        "https://www.linkedin.com/in/jane-doe/en_US",
        "https://www.linkedin.com/in/jane-doe/?originalSubdomain=uk",
        "https://www.linkedin.com/in/jane-doe?trk=public_profile",
        "https://www.linkedin.com/in/jane-doe#about",
        "https://www.linkedin.com/in/jane-doe/#about",
        "https://www.linkedin.com/in/jane-doe?a=1#b",
        "https://www.linkedin.com/in/jane-doe/details/experience/",
        "https://www.linkedin.com/in/jane-doe/recent-activity/all/",
        "https://www.linkedin.com/in/jane-doe/overlay/contact-info/",
        "https://www.linkedin.com/in/jane%2Ddoe",
    ],
)
def test_every_spelling_of_a_profile_url_gives_the_canonical_url(raw: str) -> None:
    assert normalize_linkedin_url(raw) == JANE


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "https://de.linkedin.com/in/j%C3%BCrgen-m%C3%BCller",
            "https://www.linkedin.com/in/jürgen-müller",
        ),
        (
            "https://de.linkedin.com/in/jürgen-müller/",
            "https://www.linkedin.com/in/jürgen-müller",
        ),
        # Decomposed "ü" (u + combining diaeresis) is the same profile.
        (
            "https://de.linkedin.com/in/ju%CC%88rgen",
            "https://www.linkedin.com/in/jürgen",
        ),
        ("linkedin.com/in/张伟", "https://www.linkedin.com/in/张伟"),
        ("linkedin.com/in/JaneDoe", "https://www.linkedin.com/in/JaneDoe"),
        ("linkedin.com/in/jane_doe.42", "https://www.linkedin.com/in/jane_doe.42"),
        ("linkedin.com/in/ACoAAB12cd", "https://www.linkedin.com/in/ACoAAB12cd"),
        (
            "http://uk.linkedin.com/pub/jane-doe/12/345/678",
            "https://www.linkedin.com/pub/jane-doe/12/345/678",
        ),
        (
            "https://www.linkedin.com/pub/jane-doe/12/345/678/?trk=x#y",
            "https://www.linkedin.com/pub/jane-doe/12/345/678",
        ),
        (
            "https://www.linkedin.com/pub/jane-doe/a1/b2c/3d/en",
            "https://www.linkedin.com/pub/jane-doe/a1/b2c/3d",
        ),
    ],
)
def test_a_profile_url_keeps_its_slug_decoded(raw: str, expected: str) -> None:
    assert normalize_linkedin_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("https://www.linkedin.com/company/acme", "a company page"),
        ("https://www.linkedin.com/company/acme/people/", "a company page"),
        ("https://www.linkedin.com/showcase/acme-labs", "showcase"),
        ("https://www.linkedin.com/school/stanford-university/", "a school page"),
        ("https://www.linkedin.com/posts/jane-doe_activity-123", "a post"),
        ("https://www.linkedin.com/feed/update/urn:li:activity:123/", "a feed post"),
        ("https://www.linkedin.com/pulse/some-article-jane-doe", "an article"),
        ("https://www.linkedin.com/sales/lead/ACwAAA,NAME_SEARCH", "Sales Navigator"),
        ("https://www.linkedin.com/sales/people/ACwAAA,NAME", "Sales Navigator"),
        ("https://www.linkedin.com/jobs/view/123456/", "a job page"),
        ("https://www.linkedin.com/groups/12345/", "a group page"),
        ("https://www.linkedin.com/events/123/", "an event page"),
        ("https://www.linkedin.com/pub/dir/jane/doe", "directory"),
        ("https://www.linkedin.com/", "home page"),
        ("https://www.linkedin.com", "home page"),
        ("https://www.linkedin.com/?trk=x", "home page"),
        ("https://www.linkedin.com/something-else/jane", "a LinkedIn page"),
    ],
)
def test_a_non_profile_page_is_rejected_with_its_kind(raw: str, kind: str) -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_linkedin_url(raw)
    assert info.value.code == "invalid_linkedin_url"
    assert kind in info.value.detail
    assert "not a person profile" in info.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "jane-doe",
        "https://www.linkedin.com/in/",
        "https://www.linkedin.com/in",
        "https://www.linkedin.com/in//",
        "https://www.linkedin.com/in/?x=jane",
        "https://www.linkedin.com/in/#jane",
        "https://www.linkedin.com/in/-",
        "https://www.linkedin.com/in/.",
        "https://www.linkedin.com/in/..",
        "https://www.linkedin.com/in/%2F",
        "https://www.linkedin.com/in/jane%2Fdoe",
        "https://www.linkedin.com/in/jane%20doe",
        "https://www.linkedin.com/in/jane doe",
        "https://www.linkedin.com/in/jane%00",
        "https://www.linkedin.com/in/jane%C3",
        "https://www.linkedin.com/in/jane%ZZ",
        "https://www.linkedin.com/in/jane%3Fx",
        "https://www.linkedin.com/in/jane\x00",
        "https://www.linkedin.com/in/jane\u200bdoe",
        "https://www.linkedin.com/in/😀",
        "https://www.linkedin.com/in/jane@doe",
        "https://www.linkedin.com/pub/jane-doe",
        "https://www.linkedin.com/pub/jane-doe/12/345",
        "https://www.linkedin.com/pub/jane-doe/12/345/toolong",
        # Hosts that only resemble LinkedIn.
        "https://linkedin.com.evil.io/in/jane-doe",
        "https://www.linkedin.com.evil.io/in/jane-doe",
        "https://evillinkedin.com/in/jane-doe",
        "https://linkedin.co/in/jane-doe",
        "https://linkedin.com@evil.io/in/jane-doe",
        "https://user:pass@www.linkedin.com/in/jane-doe",
        "https://evil.io\\@linkedin.com/in/jane-doe",
        "https://evil.io\\.linkedin.com/in/jane-doe",
        "https://evil.io/in/jane-doe",
        "https://evil.io/?u=https://linkedin.com/in/jane-doe",
        "https://evil.io#linkedin.com/in/jane-doe",
        "https://xn--lnkedin-g2a.com/in/jane-doe",
        "https://l\u0456nkedin.com/in/jane-doe",  # Cyrillic i lookalike
        "https://www..linkedin.com/in/jane-doe",
        "https://-x.linkedin.com/in/jane-doe",
        "https://www.linkedin.com./in/jane-doe",
        "https://[::1]/in/jane-doe",
        "https:///in/jane-doe",
        # Ports other than the scheme's default.
        "https://www.linkedin.com:8443/in/jane-doe",
        "https://www.linkedin.com:80/in/jane-doe",
        "http://www.linkedin.com:443/in/jane-doe",
        "https://www.linkedin.com:/in/jane-doe",
        "https://www.linkedin.com:abc/in/jane-doe",
        # Other schemes and malformed scheme separators.
        "javascript:alert(1)//linkedin.com/in/jane-doe",
        "javascript://www.linkedin.com/in/jane-doe",
        "ftp://www.linkedin.com/in/jane-doe",
        "file:///in/jane-doe",
        "mailto:jane@linkedin.com",
        "https:www.linkedin.com/in/jane-doe",
        "https:/www.linkedin.com/in/jane-doe",
        "data:text/html,linkedin.com/in/jane-doe",
        # Whitespace inside and absurd length.
        "https://www.linkedin.com/in/jane-\tdoe",
        "https://www.linkedin.com /in/jane-doe",
        "https://www.linkedin.com/in/" + "a" * 2000,
    ],
)
def test_a_non_profile_url_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_linkedin_url(raw)
    assert info.value.code == "invalid_linkedin_url"
    assert info.value.detail


@pytest.mark.parametrize("raw", [None, 42, b"linkedin.com/in/jane"])
def test_a_non_text_linkedin_url_raises_invalid_value(raw: object) -> None:
    with pytest.raises(InvalidValue):
        normalize_linkedin_url(raw)  # type: ignore[arg-type]


def test_the_match_key_ignores_case_but_the_canonical_url_keeps_it() -> None:
    upper = normalize_linkedin_url("linkedin.com/in/Jane-Doe")
    lower = normalize_linkedin_url("https://uk.linkedin.com/in/jane-doe/")
    assert upper == "https://www.linkedin.com/in/Jane-Doe"
    assert upper != lower
    assert linkedin_match_key(upper) == linkedin_match_key(lower) == JANE


def test_the_match_key_accepts_any_spelling_and_lowercases_unicode() -> None:
    key = linkedin_match_key("https://de.linkedin.com/in/J%C3%9CRGEN/?x=1")
    assert key == "https://www.linkedin.com/in/jürgen"


def test_the_match_key_rejects_non_profiles() -> None:
    with pytest.raises(InvalidValue):
        linkedin_match_key("https://www.linkedin.com/company/acme")


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

# Arbitrary text including control characters, surrogates excluded (they cannot
# come out of a JSON or CSV decoder), up to a few KB.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=3000)
long_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=200, max_size=5000)
# Text biased towards the characters each parser cares about.
url_ish = st.text(
    st.sampled_from(list("hts:/.@#?%:-_ inkedlcomwINPUB\\0123456789ü%C3BCAF")), max_size=80
)
email_ish = st.text(st.sampled_from(list("ab.@-_+<>:\"' []mailtoCOMx1é")), max_size=40)
phone_ish = st.text(st.sampled_from(list("+0123456789 ()-.#xext;=")), max_size=40)

PROPERTY = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.one_of(any_text, long_text, email_ish, st.emails()))
@example("mailto:<A@B.CO>")
@example("İ@x.com")
def test_email_normalization_only_rejects_with_invalid_value_and_is_idempotent(raw: str) -> None:
    try:
        normalized = normalize_email(raw)
    except InvalidValue as error:
        assert error.code == "invalid_email"
        return
    assert normalize_email(normalized) == normalized
    assert normalized == normalized.strip()
    assert len(normalized) <= 254
    local, _, domain = normalized.rpartition("@")
    assert local
    assert "." in domain


@PROPERTY
@given(
    local=st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._+-]{0,20}[A-Za-z0-9])?", fullmatch=True),
    labels=st.lists(st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True), min_size=1, max_size=3),
    tld=st.sampled_from(["com", "io", "co.uk", "DE", "org"]),
)
def test_a_plain_address_is_accepted_and_lowercased(
    local: str, labels: list[str], tld: str
) -> None:
    if ".." in local:
        return
    address = f"{local}@{'.'.join(labels)}.{tld}"
    assert normalize_email(f"  <{address}> ") == address.lower()


@PROPERTY
@given(st.one_of(any_text, long_text, phone_ish), st.sampled_from(["US", "GB", "DE", "ZZ", ""]))
@example("0044 20 7946 0958", "US")
@example("+1 415 555 0132 ext 99", "US")
def test_phone_normalization_only_rejects_with_invalid_value_and_is_idempotent(
    raw: str, region: str
) -> None:
    try:
        normalized = normalize_phone(raw, region)
    except InvalidValue as error:
        assert error.code == "invalid_phone"
        return
    assert normalized.startswith("+")
    assert normalized[1:].isdigit()
    assert normalize_phone(normalized, region) == normalized
    # An E.164 number means the same thing whatever the default region.
    assert normalize_phone(normalized, "ZZ") == normalized


@PROPERTY
@given(st.integers(min_value=-(10**20), max_value=10**20), st.sampled_from(["US", "GB", "ZZ"]))
def test_an_int_phone_only_rejects_with_invalid_value(raw: int, region: str) -> None:
    try:
        normalized = normalize_phone(raw, region)
    except InvalidValue:
        return
    assert normalize_phone(normalized, region) == normalized


@PROPERTY
@given(
    region=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
    style=st.sampled_from(
        [
            phonenumbers.PhoneNumberFormat.E164,
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.NATIONAL,
        ]
    ),
    extension=st.sampled_from(["", " ext 12", " x7", " #301"]),
)
def test_every_region_example_number_normalizes_to_its_e164(
    region: str, style: int, extension: str
) -> None:
    number = phonenumbers.example_number(region)
    if number is None:
        return
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    written = phonenumbers.format_number(number, style)
    assert normalize_phone(written, region) == expected
    if style != phonenumbers.PhoneNumberFormat.NATIONAL:
        assert normalize_phone(written + extension, "US") == expected
        assert normalize_phone("00" + expected[1:], "US") == expected


@PROPERTY
@given(st.one_of(any_text, long_text, url_ish))
@example("https://www.linkedin.com/in/%CC%88")
@example("linkedin.com:443/in/x")
def test_linkedin_normalization_only_rejects_with_invalid_value_and_is_idempotent(
    raw: str,
) -> None:
    try:
        normalized = normalize_linkedin_url(raw)
    except InvalidValue as error:
        assert error.code == "invalid_linkedin_url"
        return
    assert normalized.startswith(("https://www.linkedin.com/in/", "https://www.linkedin.com/pub/"))
    assert normalize_linkedin_url(normalized) == normalized
    assert linkedin_match_key(normalized) == normalized.lower()


slug_chars = st.one_of(
    st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")),
    st.characters(categories=["Ll", "Lu", "Lo", "Nd"]),
)
slugs = st.text(slug_chars, min_size=1, max_size=40).filter(
    lambda slug: any(ch.isalnum() for ch in slug)
)


@PROPERTY
@given(
    slug=slugs,
    prefix=st.sampled_from(
        [
            "https://www.linkedin.com",
            "http://linkedin.com",
            "linkedin.com",
            "www.linkedin.com",
            "HTTPS://UK.LINKEDIN.COM",
            "https://m.linkedin.com:443",
        ]
    ),
    suffix=st.sampled_from(["", "/", "/en", "/pt-br/", "?trk=1", "#x", "/details/skills/"]),
    encode=st.booleans(),
)
def test_any_valid_slug_survives_any_decoration(
    slug: str, prefix: str, suffix: str, encode: bool
) -> None:
    import unicodedata

    path_slug = quote(slug, safe="") if encode else slug
    canonical = normalize_linkedin_url(f"{prefix}/in/{path_slug}{suffix}")
    assert canonical == f"https://www.linkedin.com/in/{unicodedata.normalize('NFC', slug)}"
    ascii_swapped = "".join(ch.swapcase() if ch.isascii() else ch for ch in path_slug)
    swapped = normalize_linkedin_url(f"{prefix}/in/{ascii_swapped}{suffix}")
    assert linkedin_match_key(swapped) == linkedin_match_key(canonical)


@PROPERTY
@given(
    host=st.from_regex(r"[a-z0-9.\-@:]{1,40}", fullmatch=True),
)
def test_only_linkedin_hosts_are_accepted(host: str) -> None:
    try:
        normalize_linkedin_url(f"https://{host}/in/jane-doe")
    except InvalidValue:
        return
    hostname = host.split(":")[0]
    assert "@" not in host
    assert hostname == "linkedin.com" or hostname.endswith(".linkedin.com")
