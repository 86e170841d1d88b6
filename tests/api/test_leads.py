"""The lead API over real HTTP: create or update, matching, isolation, errors, requests opened."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from clayloop import models as m
from tests.conftest import SECRET
from tests.support.helpers import create_lead, lead_events, requests_of, rows, unique_email

LEAD_KEYS = {
    "id",
    "workspace_id",
    "email",
    "alternate_emails",
    "first_name",
    "last_name",
    "company_name",
    "company_domain",
    "title",
    "linkedin_url",
    "phone",
    "sentiment",
    "ghl_contact_id",
    "external_id",
    "opted_out",
    "enrichment_status",
    "enrichment",
    "created_at",
    "updated_at",
}
REQUEST_KEYS = {"request_id", "status", "reason", "attempts", "sent_at", "completed_at"}


async def post(client: httpx.AsyncClient, ws: Any, **fields: Any) -> httpx.Response:
    return await client.post("/api/v1/leads", json=fields, headers=ws.headers)


async def lead_count(engine: Any, workspace_id: str) -> int:
    found = await rows(
        engine, sa.select(sa.func.count()).where(m.lead.c.workspace_id == workspace_id)
    )
    return int(found[0][0])


def assert_error(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error", "detail"}, body
    assert body["detail"]
    if code is not None:
        assert body["error"] == code, body
    return body


# --- Create and update ---------------------------------------------------------------------


async def test_a_new_lead_is_created_with_201_and_the_lead_resource(client, ws):
    answer = await post(
        client,
        ws,
        email="  Jane.Doe@Acme.COM ",
        first_name="Jane",
        last_name="Doe",
        company_name="Acme",
        phone="(415) 555-0132",
        linkedin_url="http://uk.linkedin.com/in/jane-doe-123/?trk=abc",
        sentiment="Interested",
    )
    assert answer.status_code == 201, answer.text
    lead = answer.json()
    assert set(lead) == LEAD_KEYS
    assert lead["workspace_id"] == ws.id
    assert lead["email"] == "jane.doe@acme.com"
    assert lead["phone"] == "+14155550132"
    assert lead["linkedin_url"] == "https://www.linkedin.com/in/jane-doe-123"
    assert set(lead["enrichment"]) == {"linkedin", "phone"}
    for summary in lead["enrichment"].values():
        assert set(summary) == REQUEST_KEYS

    again = await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)
    assert again.status_code == 200
    assert again.json() == lead


async def test_posting_the_same_person_again_updates_it_with_200(client, ws, engine):
    first = await post(client, ws, email="sam@acme.com", first_name="Sam")
    assert first.status_code == 201
    second = await post(client, ws, email="SAM@ACME.COM", title="CTO")
    assert second.status_code == 200, second.text
    lead = second.json()
    assert lead["id"] == first.json()["id"]
    assert lead["first_name"] == "Sam"  # absent fields leave stored values unchanged
    assert lead["title"] == "CTO"
    assert await lead_count(engine, ws.id) == 1


async def test_an_update_is_recorded_in_the_lead_history_masked(client, ws, engine):
    lead = await create_lead(client, ws, email="pat@acme.com", ghl_contact_id="g-pat")
    await post(client, ws, ghl_contact_id="g-pat", phone="+1 415 555 0177")
    events = await lead_events(engine, lead["id"])
    assert [e.event for e in events][:1] == ["created"]
    phone_set = [e for e in events if e.event == "field_set" and e.field == "phone"]
    assert len(phone_set) == 1
    assert phone_set[0].old_value is None
    assert phone_set[0].new_value == "+1******0177"
    assert phone_set[0].source == "api"


# --- Matching order ------------------------------------------------------------------------


async def test_ghl_contact_id_is_matched_before_external_id(client, ws):
    by_ghl = await create_lead(client, ws, email=unique_email(), ghl_contact_id="ghl-1")
    await create_lead(client, ws, email=unique_email(), external_id="ext-2")
    answer = await post(client, ws, ghl_contact_id="ghl-1", external_id="ext-2")
    assert answer.status_code == 200
    assert answer.json()["id"] == by_ghl["id"]


async def test_external_id_is_matched_before_the_linkedin_url(client, ws):
    by_external = await create_lead(client, ws, email=unique_email(), external_id="ext-1")
    await create_lead(
        client, ws, email=unique_email(), linkedin_url="https://www.linkedin.com/in/lin-1"
    )
    answer = await post(
        client, ws, external_id="ext-1", linkedin_url="https://www.linkedin.com/in/lin-1"
    )
    assert answer.status_code == 200
    assert answer.json()["id"] == by_external["id"]


async def test_the_linkedin_url_is_matched_before_the_email(client, ws):
    by_linkedin = await create_lead(
        client, ws, email=unique_email(), linkedin_url="https://www.linkedin.com/in/ada-l"
    )
    email = unique_email()
    await create_lead(client, ws, email=email)
    answer = await post(client, ws, linkedin_url="https://www.linkedin.com/in/ada-l", email=email)
    assert answer.status_code == 200
    assert answer.json()["id"] == by_linkedin["id"]


@pytest.mark.parametrize(
    "spelling",
    [
        "https://www.linkedin.com/in/Ada-Lovelace-42/",
        "http://linkedin.com/in/ada-lovelace-42",
        "https://uk.linkedin.com/in/ada-lovelace-42?trk=public_profile#about",
        "HTTPS://M.LINKEDIN.COM/in/ada-lovelace-42/en",
        "www.linkedin.com/in/ada%2Dlovelace%2D42",
    ],
)
async def test_different_spellings_of_one_linkedin_profile_match_one_lead(client, ws, spelling):
    lead = await create_lead(
        client, ws, email=unique_email(), linkedin_url="https://www.linkedin.com/in/ada-lovelace-42"
    )
    answer = await post(client, ws, linkedin_url=spelling, first_name="Ada")
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == lead["id"]


async def test_the_email_is_matched_case_insensitively_before_alternate_emails(client, ws):
    shared = unique_email("shared")
    owner = await create_lead(client, ws, email=shared)
    other = await create_lead(client, ws, email=unique_email(), ghl_contact_id="g-other")
    listed = await post(client, ws, ghl_contact_id="g-other", alternate_emails=[shared])
    assert listed.status_code == 200
    assert listed.json()["id"] == other["id"]

    answer = await post(client, ws, email=shared.upper())
    assert answer.status_code == 200
    assert answer.json()["id"] == owner["id"]


async def test_alternate_emails_are_matched_before_the_phone(client, ws):
    alternate = unique_email("alt")
    by_alternate = await create_lead(client, ws, email=unique_email(), alternate_emails=[alternate])
    await create_lead(client, ws, email=unique_email(), phone="+1 415 555 0150")
    answer = await post(client, ws, email=alternate, phone="+14155550150")
    assert answer.status_code == 200
    assert answer.json()["id"] == by_alternate["id"]


@pytest.mark.parametrize(
    "spelling", ["(415) 555-0161", "415.555.0161", "+1 415 555 0161 ext. 9", "1-415-555-0161"]
)
async def test_different_formats_of_one_phone_number_match_one_lead(client, ws, spelling):
    lead = await create_lead(client, ws, email=unique_email(), phone="+14155550161")
    answer = await post(client, ws, phone=spelling, title="VP")
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == lead["id"]
    assert answer.json()["title"] == "VP"


async def test_an_identity_conflict_is_409_and_changes_nothing(client, ws, engine):
    email = unique_email()
    lead = await create_lead(client, ws, email=email, ghl_contact_id="ghl-a")
    answer = await post(client, ws, email=email, ghl_contact_id="ghl-b", title="CEO")
    assert_error(answer, 409, "identity_conflict")
    after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
    assert after["ghl_contact_id"] == "ghl-a"
    assert after["title"] is None
    assert await lead_count(engine, ws.id) == 1


async def test_a_replaced_email_stays_as_an_alternate_and_still_matches(client, ws):
    old, new = unique_email("old"), unique_email("new")
    lead = await create_lead(client, ws, email=old, ghl_contact_id="g-move")
    moved = await post(client, ws, ghl_contact_id="g-move", email=new)
    assert moved.status_code == 200
    assert moved.json()["email"] == new
    assert moved.json()["alternate_emails"] == [old]

    found = await client.get("/api/v1/leads", params={"email": old}, headers=ws.headers)
    assert found.status_code == 200
    assert found.json()["id"] == lead["id"]
    again = await post(client, ws, email=old)
    assert again.status_code == 200
    assert again.json()["id"] == lead["id"]


# --- Reading and workspace isolation -------------------------------------------------------


async def test_get_by_email_finds_the_lead_case_insensitively(client, ws):
    email = unique_email()
    lead = await create_lead(client, ws, email=email)
    answer = await client.get("/api/v1/leads", params={"email": email.upper()}, headers=ws.headers)
    assert answer.status_code == 200
    assert answer.json()["id"] == lead["id"]
    assert answer.json()["enrichment"]["phone"]["request_id"]


async def test_get_by_email_without_a_match_is_404(client, ws):
    answer = await client.get("/api/v1/leads", params={"email": unique_email()}, headers=ws.headers)
    assert_error(answer, 404, "unknown_lead")


async def test_get_without_email_is_422(client, ws):
    assert_error(await client.get("/api/v1/leads", headers=ws.headers), 422)


async def test_get_by_an_invalid_email_is_422(client, ws):
    answer = await client.get("/api/v1/leads", params={"email": "nope"}, headers=ws.headers)
    assert_error(answer, 422, "invalid_email")


@pytest.mark.parametrize("lead_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000"])
async def test_an_unknown_lead_id_is_404(client, ws, lead_id):
    answer = await client.get(f"/api/v1/leads/{lead_id}", headers=ws.headers)
    assert_error(answer, 404, "unknown_lead")


async def test_another_workspaces_lead_is_404_by_id_and_by_email(client, ws, workspace_factory):
    email = unique_email()
    theirs = await create_lead(client, ws, email=email)
    other = await workspace_factory(eligibility="all_leads")

    by_id = await client.get(f"/api/v1/leads/{theirs['id']}", headers=other.headers)
    assert_error(by_id, 404, "unknown_lead")
    by_email = await client.get("/api/v1/leads", params={"email": email}, headers=other.headers)
    assert_error(by_email, 404, "unknown_lead")

    # The same person posted by the other workspace is that workspace's own, new lead.
    mine = await post(client, other, email=email)
    assert mine.status_code == 201
    assert mine.json()["id"] != theirs["id"]
    assert mine.json()["workspace_id"] == other.id


# --- Refused input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"email": "not-an-email"}, "invalid_email"),
        ({"email": "jane@"}, "invalid_email"),
        ({"email": unique_email(), "phone": "12"}, "invalid_phone"),
        ({"email": unique_email(), "phone": "+1 415 555 013"}, "invalid_phone"),
        (
            {"email": unique_email(), "linkedin_url": "https://www.linkedin.com/company/acme"},
            "invalid_linkedin_url",
        ),
        (
            {"email": unique_email(), "linkedin_url": "https://linkedin.com.evil.io/in/jane"},
            "invalid_linkedin_url",
        ),
        ({"alternate_emails": ["fine@acme.com", "broken"]}, "invalid_email"),
    ],
)
async def test_an_invalid_identifier_is_422_naming_it(client, ws, engine, fields, code):
    answer = await post(client, ws, **fields)
    assert_error(answer, 422, code)
    assert await lead_count(engine, ws.id) == 0


async def test_an_unknown_field_is_422(client, ws, engine):
    answer = await post(client, ws, email=unique_email(), favourite_colour="teal")
    body = assert_error(answer, 422, "invalid_request")
    assert "favourite_colour" in body["detail"]
    assert await lead_count(engine, ws.id) == 0


@pytest.mark.parametrize("field", ["first_name", "ghl_contact_id", "company_name"])
async def test_text_with_a_nul_character_is_422_on_every_database(client, ws, engine, field):
    answer = await post(client, ws, email=unique_email(), **{field: "a\u0000b"})
    body = assert_error(answer, 422, "invalid_request")
    assert field in body["detail"]
    assert await lead_count(engine, ws.id) == 0


async def test_malformed_json_is_400(client, ws):
    answer = await client.post(
        "/api/v1/leads",
        content=b'{"email": "a@b.com",',
        headers={**ws.headers, "content-type": "application/json"},
    )
    assert_error(answer, 400, "invalid_json")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cl_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {SECRET}"},  # the callback secret is not an API key
    ],
)
async def test_a_missing_or_wrong_api_key_is_401(client, ws, engine, headers):
    lead = await create_lead(client, ws, email=unique_email())
    created = await client.post("/api/v1/leads", json={"email": unique_email()}, headers=headers)
    assert_error(created, 401, "unauthorized")
    read = await client.get(f"/api/v1/leads/{lead['id']}", headers=headers)
    assert_error(read, 401, "unauthorized")
    assert await lead_count(engine, ws.id) == 1


# --- Enrichment requests opened ------------------------------------------------------------


async def test_a_lead_with_only_an_email_gets_a_queued_request_of_each_kind(client, ws, engine):
    lead = await create_lead(client, ws, email=unique_email())
    assert lead["enrichment_status"] == "pending"
    assert lead["enrichment"]["linkedin"]["status"] == "queued"
    assert lead["enrichment"]["phone"]["status"] == "queued"
    stored = await requests_of(engine, lead["id"])
    assert sorted((r.kind, r.status) for r in stored) == [
        ("linkedin", "queued"),
        ("phone", "queued"),
    ]
    assert {r.id for r in stored} == {
        lead["enrichment"]["linkedin"]["request_id"],
        lead["enrichment"]["phone"]["request_id"],
    }


async def test_a_lead_with_a_linkedin_url_gets_only_a_phone_request(client, ws, engine):
    lead = await create_lead(
        client, ws, email=unique_email(), linkedin_url="https://www.linkedin.com/in/has-one"
    )
    assert lead["enrichment"]["phone"]["status"] == "queued"
    assert lead["enrichment"]["linkedin"]["status"] == "skipped"
    assert lead["enrichment"]["linkedin"]["reason"] == "has_value"
    stored = await requests_of(engine, lead["id"])
    assert [r.kind for r in stored if r.status == "queued"] == ["phone"]


async def test_a_lead_with_both_values_needs_nothing_and_opens_nothing(client, ws, engine):
    lead = await create_lead(
        client,
        ws,
        email=unique_email(),
        linkedin_url="https://www.linkedin.com/in/has-both",
        phone="+1 415 555 0199",
    )
    stored = await requests_of(engine, lead["id"])
    assert [r.status for r in stored if r.status == "queued"] == []


async def test_a_lead_without_email_is_not_needed_and_opens_no_request(client, ws, engine):
    lead = await create_lead(client, ws, phone="+1 415 555 0123", first_name="Sms")
    assert lead["enrichment_status"] == "not_needed"
    stored = await requests_of(engine, lead["id"])
    assert all(r.status == "skipped" and r.reason == "no_email" for r in stored)


async def test_reposting_a_lead_does_not_open_a_second_request(client, ws, engine):
    email = unique_email()
    lead = await create_lead(client, ws, email=email)
    again = await create_lead(client, ws, email=email, first_name="Again")
    assert again["enrichment"] == lead["enrichment"]
    stored = await requests_of(engine, lead["id"])
    assert len(stored) == 2


async def test_learning_the_linkedin_url_skips_the_queued_linkedin_request(client, ws):
    email = unique_email()
    lead = await create_lead(client, ws, email=email)
    updated = await create_lead(
        client, ws, email=email, linkedin_url="https://www.linkedin.com/in/learned-later"
    )
    assert (
        updated["enrichment"]["linkedin"]["request_id"]
        == (lead["enrichment"]["linkedin"]["request_id"])
    )
    assert updated["enrichment"]["linkedin"]["status"] == "skipped"
    assert updated["enrichment"]["linkedin"]["reason"] == "has_value"
    assert updated["enrichment"]["phone"]["status"] == "queued"
