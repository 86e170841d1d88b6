"""POST /api/webhooks/clay over real HTTP and a real database, read like the runbook.

Bound and parse, find the lead, read the outcome and the value, apply exactly once,
journal and log. Every test checks what a person would look at afterwards: the HTTP
answer, the lead resource, and the rows in enrichment_request, lead_event and
callback_event.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clayloop import models as m
from clayloop.kit.clock import utcnow
from tests.conftest import SECRET, WS
from tests.support.helpers import (
    create_lead,
    eventually,
    journal_mark,
    journal_since,
    lead_events,
    mark_sent,
    request_row,
    requests_of,
    token_for,
    unique_email,
    unique_phone,
)

CALLBACK = "/api/webhooks/clay"
AUTH = {"x-clay-signature": SECRET}
PHONE = "+1 415 555 0132"
PHONE_E164 = "+14155550132"
PROFILE = "https://www.linkedin.com/in/ada-lovelace"
ACCEPTED_STATUSES = {200, 400, 401, 404, 413, 422}


@dataclass
class Sent:
    """A lead with its requests moved to ``sent``, ready to be called back."""

    lead: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.lead["id"])

    def request_id(self, kind: str) -> str:
        return str(self.lead["enrichment"][kind]["request_id"])

    def body(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The recommended callback body for ``kind``, with ``fields`` added."""
        request_id = self.request_id(kind)
        return {
            "request_id": request_id,
            "lead_id": self.id,
            "enrichment_type": kind,
            "callback_token": token_for(request_id),
            **fields,
        }


async def sent_lead(
    client: httpx.AsyncClient,
    ws: WS,
    engine: Any,
    kinds: tuple[str, ...] = ("linkedin", "phone"),
    **fields: Any,
) -> Sent:
    """Create a lead (a fresh email unless given) and mark its requests of ``kinds`` sent."""
    fields.setdefault("email", unique_email())
    lead = await create_lead(client, ws, **fields)
    for kind in kinds:
        await mark_sent(engine, lead["enrichment"][kind]["request_id"])
    return Sent(lead)


async def call(
    client: httpx.AsyncClient, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST a callback body as JSON with the server secret."""
    return await client.post(CALLBACK, json=body, headers={**AUTH, **(headers or {})})


async def get_lead(client: httpx.AsyncClient, ws: WS, lead_id: str) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/leads/{lead_id}", headers=ws.headers)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def assert_error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    detail: str = body["detail"]
    return detail


def assert_applied(answer: httpx.Response, lead_id: str, kind: str, status: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "result": "applied",
        "lead_id": lead_id,
        "kind": kind,
        "status": status,
    }


async def snapshot(engine: Any, lead_id: str) -> tuple[Any, ...]:
    """Everything a callback may change for a lead: the lead row, its requests, its history."""
    async with engine.connect() as conn:
        lead = (await conn.execute(sa.select(m.lead).where(m.lead.c.id == lead_id))).one()
    return (
        tuple(lead),
        tuple(tuple(r) for r in await requests_of(engine, lead_id)),
        tuple(tuple(e) for e in await lead_events(engine, lead_id)),
    )


# === Bound and parse ========================================================================


async def test_a_body_over_256_kib_is_413_and_changes_nothing(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    body = json.dumps(sent.body("phone", success=True, phone=PHONE, pad="x" * 262_144)).encode()
    mark = await journal_mark(engine)
    answer = await client.post(CALLBACK, content=body, headers=AUTH)
    assert_error(answer, 413, "body_too_large")
    assert await snapshot(engine, sent.id) == before
    [journal] = await journal_since(engine, mark)
    assert journal.http_status == 413
    assert journal.body_redacted is None


async def test_a_chunked_body_over_256_kib_is_413_too(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    payload = json.dumps(sent.body("phone", success=True, phone=PHONE, pad="x" * 300_000))

    async def chunks() -> AsyncIterator[bytes]:
        data = payload.encode()
        for start in range(0, len(data), 16_384):
            yield data[start : start + 16_384]

    answer = await client.post(CALLBACK, content=chunks(), headers=AUTH)
    assert_error(answer, 413, "body_too_large")
    assert await snapshot(engine, sent.id) == before


async def test_a_body_of_exactly_256_kib_is_accepted(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = sent.body("phone", success=True, phone=PHONE, pad="")
    size = len(json.dumps(body).encode())
    body["pad"] = "x" * (262_144 - size)
    data = json.dumps(body).encode()
    assert len(data) == 262_144
    answer = await client.post(CALLBACK, content=data, headers=AUTH)
    assert_applied(answer, sent.id, "phone", "enriched")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", None, "application/x-www-form-urlencoded"],
)
async def test_a_json_object_is_read_whatever_the_content_type(client, ws, engine, content_type):
    sent = await sent_lead(client, ws, engine)
    headers = dict(AUTH)
    if content_type:
        headers["content-type"] = content_type
    data = json.dumps(sent.body("phone", success=True, phone=PHONE)).encode()
    answer = await client.post(CALLBACK, content=data, headers=headers)
    assert_applied(answer, sent.id, "phone", "enriched")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b"{'request_id': 'x'}", "invalid_json"),
        (b'{"a": 1,}', "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"NaN-ish", "invalid_json"),
        (b'{"a": 1}{"b": 2}', "invalid_json"),
        (b"[]", "not_an_object"),
        (b'[{"request_id": "x", "success": true}]', "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (b"true", "not_an_object"),
        (b"[" * 10_000 + b"]" * 10_000, None),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, None),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "too_deep"),
        (b'{"n": ' + b"9" * 5000 + b"}", "invalid_json"),
    ],
    ids=[
        "empty",
        "truncated",
        "single-quotes",
        "trailing-comma",
        "not-utf8",
        "not-json",
        "two-objects",
        "empty-array",
        "array-of-object",
        "string",
        "number",
        "null",
        "boolean",
        "10000-nested-arrays",
        "10000-nested-objects",
        "40-nested-objects",
        "5000-digit-number",
    ],
)
async def test_a_body_that_is_not_one_json_object_is_400(client, engine, data, code):
    mark = await journal_mark(engine)
    answer = await client.post(CALLBACK, content=data, headers=AUTH)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"}
    if code is not None:
        assert body["error"] == code
    [journal] = await journal_since(engine, mark)
    assert journal.http_status == 400
    assert journal.auth_method == "secret:x-clay-signature"


# Any text JSON can carry, NUL and unpaired surrogates included (sent as \u escapes).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=5)
    ),
    max_leaves=25,
)
INTERESTING_KEYS = [
    "request_id",
    "requestId",
    "lead_id",
    "Lead ID",
    "callback_token",
    "enrichment_type",
    "type",
    "kind",
    "status",
    "success",
    "error",
    "message",
    "email",
    "phone",
    "mobile",
    "Phone Number",
    "linkedin_url",
    "LinkedIn",
    "profile_url",
    "data",
    "result",
    "fields",
    "record",
    "body",
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_json_value_makes_the_endpoint_answer_500(client, ws, engine, data):
    sent = await sent_lead(client, ws, engine)
    hints = st.sampled_from(
        [
            sent.id,
            sent.request_id("phone"),
            sent.request_id("linkedin"),
            token_for(sent.request_id("phone")),
            sent.lead["email"],
            "phone",
            "linkedin",
            "success",
            "not_found",
            "error",
            True,
            False,
            "N/A",
            PHONE,
            "415 555 0199 ext 7",
            PROFILE,
            "https://www.linkedin.com/company/acme",
            "not a value",
        ]
    )
    values = st.one_of(hints, JSON_VALUES)
    obj = st.dictionaries(
        st.one_of(st.sampled_from(INTERESTING_KEYS), ANY_TEXT),
        st.one_of(values, st.dictionaries(st.sampled_from(INTERESTING_KEYS), values, max_size=4)),
        max_size=8,
    )
    body = data.draw(st.one_of(obj, JSON_VALUES))
    # json.dumps escapes what httpx's own encoder would refuse (unpaired surrogates).
    answer = await client.post(CALLBACK, content=json.dumps(body).encode(), headers=AUTH)
    assert answer.status_code in ACCEPTED_STATUSES, answer.text
    assert set(answer.json()) in ({"error", "detail"}, {"result", "lead_id", "kind", "status"})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=600),
    content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]),
    authenticated=st.booleans(),
)
async def test_no_bytes_make_the_endpoint_answer_500(client, data, content_type, authenticated):
    headers = {"content-type": content_type, **(AUTH if authenticated else {})}
    answer = await client.post(CALLBACK, content=data, headers=headers)
    assert answer.status_code in ACCEPTED_STATUSES, answer.text
    if not authenticated:
        assert answer.status_code == 401


@pytest.mark.parametrize(
    "extra",
    [
        {"success": False, "error": "bad\u0000byte"},
        {"status": "error", "message": "lone \ud800 surrogate"},
        {"status": "error", "message": "lone \udfff"},
        {"callback_token": "\ud800"},
        {"callback_token": "tok\u0000en"},
        {"status": "\u0000"},
        {"status": "\ud800"},
        {"enrichment_type": "\ud800"},
        {"success": "\ud800"},
        {"phone": "\ud800"},
        {"phone": "+1 415 555 0132\u0000"},
        {"email": "a@\ud800.com"},
        {"Lead ID": "\u0000"},
    ],
)
async def test_text_a_database_cannot_store_never_causes_a_500(client, ws, engine, extra):
    sent = await sent_lead(client, ws, engine)
    body = {**sent.body("phone"), **extra}
    data = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes
    answer = await client.post(CALLBACK, content=data, headers=AUTH)
    assert answer.status_code in ACCEPTED_STATUSES, answer.text


async def test_an_error_message_with_a_nul_byte_is_kept_without_it(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", success=False, error="quota\u0000 exceeded"))
    assert_applied(answer, sent.id, "phone", "failed")
    row = await request_row(engine, sent.request_id("phone"))
    assert row.reason == "quota exceeded"


# === Finding the request and the lead =======================================================


async def test_request_id_alone_identifies_the_request(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, {"request_id": sent.request_id("phone"), "phone": PHONE})
    assert_applied(answer, sent.id, "phone", "enriched")
    assert (await get_lead(client, ws, sent.id))["phone"] == PHONE_E164


async def test_lead_id_and_kind_identify_the_open_request(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, {"lead_id": sent.id, "type": "LinkedIn", "linkedin": PROFILE})
    assert_applied(answer, sent.id, "linkedin", "enriched")
    assert (await request_row(engine, sent.request_id("linkedin"))).status == "enriched"
    assert (await request_row(engine, sent.request_id("phone"))).status == "sent"


async def test_lead_id_and_kind_prefer_the_open_request_then_the_latest(
    client, engine, workspace_factory
):
    ws = await workspace_factory(eligibility="all_leads", cooldown_days=0)
    email = unique_email()
    sent = await sent_lead(client, ws, engine, kinds=("phone",), email=email)
    first = sent.request_id("phone")
    miss = await call(client, {"request_id": first, "status": "not_found"})
    assert_applied(miss, sent.id, "phone", "not_found")
    # Posting the lead again opens a new phone request (no cooldown in this workspace).
    again = await create_lead(client, ws, email=email)
    second = again["enrichment"]["phone"]["request_id"]
    assert second != first
    assert again["enrichment"]["phone"]["status"] == "queued"

    # Open request wins over the older closed one.
    answer = await call(client, {"lead_id": sent.id, "kind": "phone", "status": "no_match"})
    assert_applied(answer, sent.id, "phone", "not_found")
    assert (await request_row(engine, second)).status == "not_found"

    # All closed: the latest one is the one a late success upgrades.
    late = await call(client, {"lead_id": sent.id, "kind": "phone", "phone": PHONE})
    assert_applied(late, sent.id, "phone", "enriched")
    assert (await request_row(engine, second)).status == "enriched"
    assert (await request_row(engine, first)).status == "not_found"


@pytest.mark.parametrize(
    "key", ["lead_id", "leadId", "Lead ID", "lead-id", "LEAD_ID", "clayloop_lead_id"]
)
async def test_the_lead_id_key_may_be_spelled_any_way(client, ws, engine, key):
    sent = await sent_lead(client, ws, engine)
    answer = await call(
        client, {key: sent.id, "enrichment_type": "phone", "success": True, "phone": PHONE}
    )
    assert_applied(answer, sent.id, "phone", "enriched")


@pytest.mark.parametrize("container", ["data", "result", "fields", "record", "body", "Data"])
async def test_ids_and_values_are_found_nested_in_a_container(client, ws, engine, container):
    sent = await sent_lead(client, ws, engine)
    inner = {"requestId": sent.request_id("phone"), "Mobile Phone": PHONE, "Success": "true"}
    answer = await call(client, {container: inner})
    assert_applied(answer, sent.id, "phone", "enriched")
    assert (await get_lead(client, ws, sent.id))["phone"] == PHONE_E164


async def test_ids_are_found_two_containers_deep(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = {"data": {"record": {"Lead ID": sent.id, "fields": {"LinkedIn URL": PROFILE}}}}
    answer = await call(client, body)
    assert_applied(answer, sent.id, "linkedin", "enriched")


async def test_without_ids_the_lead_is_found_by_its_email(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = {"Work Email": sent.lead["email"].upper(), "enrichment_type": "phone", "phone": PHONE}
    answer = await call(client, body)
    assert_applied(answer, sent.id, "phone", "enriched")


async def test_without_ids_the_lead_is_found_by_an_alternate_email(client, ws, engine):
    alternate = unique_email("alt")
    sent = await sent_lead(client, ws, engine, alternate_emails=[alternate])
    answer = await call(client, {"email": alternate, "phone_number": PHONE})
    assert_applied(answer, sent.id, "phone", "enriched")


async def test_without_ids_a_phone_result_is_found_by_the_linkedin_url(client, ws, engine):
    slug = unique_email("li").split("@")[0].replace(".", "-")
    lead = await create_lead(
        client, ws, email=unique_email(), linkedin_url=f"https://www.linkedin.com/in/{slug}"
    )
    await mark_sent(engine, lead["enrichment"]["phone"]["request_id"])
    body = {
        "LinkedIn URL": f"http://uk.linkedin.com/in/{slug.upper()}/?trk=x",
        "enrichment_type": "phone",
        "Direct Phone": PHONE,
    }
    answer = await call(client, body)
    assert_applied(answer, lead["id"], "phone", "enriched")


async def test_without_ids_a_workspace_secret_looks_only_in_its_workspace(
    client, ws, engine, workspace_factory
):
    email = unique_email()
    other = await workspace_factory(eligibility="all_leads")
    await sent_lead(client, other, engine, email=email)
    mine = await sent_lead(client, ws, engine, email=email)
    body = {"email": email, "enrichment_type": "phone", "phone": PHONE}
    # The server-wide secret belongs to no workspace: the same email in two is ambiguous.
    assert "2 leads" in assert_error(await call(client, body), 422, "ambiguous_lead")
    made = await client.post("/api/v1/workspace/callback-secrets", headers=ws.headers)
    secret = made.json()["callback_secret"]
    answer = await client.post(CALLBACK, json=body, headers={"x-clay-secret": secret})
    assert_applied(answer, mine.id, "phone", "enriched")


async def test_without_ids_an_ambiguous_email_is_422_naming_how_many(client, ws, engine):
    email = unique_email()
    one = await sent_lead(client, ws, engine, email=email, ghl_contact_id="g-1")
    other = await sent_lead(client, ws, engine, email=unique_email(), ghl_contact_id="g-2")
    # The second lead takes the same email through its own identifier.
    moved = await create_lead(client, ws, ghl_contact_id="g-2", email=email)
    assert moved["id"] == other.id
    before = (await snapshot(engine, one.id), await snapshot(engine, other.id))
    answer = await call(client, {"email": email, "enrichment_type": "phone", "phone": PHONE})
    detail = assert_error(answer, 422, "ambiguous_lead")
    assert "2 leads" in detail
    assert (await snapshot(engine, one.id), await snapshot(engine, other.id)) == before


@pytest.mark.parametrize(
    ("ids", "code"),
    [
        ({"request_id": "00000000-0000-4000-8000-000000000000"}, "unknown_request"),
        ({"request_id": "not-a-uuid"}, "unknown_request"),
        ({"request_id": 12345}, "unknown_request"),
        ({"request_id": "'; DROP TABLE lead; --"}, "unknown_request"),
        ({"lead_id": "00000000-0000-4000-8000-000000000000"}, "unknown_lead"),
        ({"lead_id": "lead_123"}, "unknown_lead"),
        ({"email": "nobody.ever@example.com"}, "unknown_lead"),
        ({"email": "not an email"}, "unknown_lead"),
        ({}, "unknown_lead"),
    ],
)
async def test_an_unknown_or_malformed_id_is_404_and_nothing_changes(client, ws, engine, ids, code):
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    mark = await journal_mark(engine)
    answer = await call(
        client, {**ids, "enrichment_type": "phone", "success": True, "phone": PHONE}
    )
    assert_error(answer, 404, code)
    assert await snapshot(engine, sent.id) == before
    [journal] = await journal_since(engine, mark)
    assert (journal.outcome, journal.http_status) == (code, 404)


async def test_a_lead_id_of_a_request_that_belongs_to_another_lead_is_not_trusted(
    client, ws, engine
):
    mine = await sent_lead(client, ws, engine)
    other = await sent_lead(client, ws, engine)
    # request_id wins: the request's own lead is updated, whatever lead_id claims.
    answer = await call(client, {**mine.body("phone"), "lead_id": other.id, "phone": PHONE})
    assert_applied(answer, mine.id, "phone", "enriched")
    assert (await get_lead(client, ws, other.id))["phone"] is None


@pytest.mark.parametrize("status", ["queued", "sending"])
async def test_a_callback_for_a_request_not_yet_marked_sent_is_accepted(client, ws, engine, status):
    sent = await sent_lead(client, ws, engine, kinds=())
    request_id = sent.request_id("phone")
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(m.enrichment_request)
            .where(m.enrichment_request.c.id == request_id)
            .values(status=status, lease_until=utcnow() + timedelta(seconds=60), lease_owner="w1")
        )
    answer = await call(client, sent.body("phone", success=True, phone=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")
    row = await request_row(engine, request_id)
    assert (row.status, row.lease_until, row.lease_owner) == ("enriched", None, None)


async def test_a_callback_days_late_still_lands(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(m.enrichment_request)
            .where(m.enrichment_request.c.id == sent.request_id("phone"))
            .values(sent_at=utcnow() - timedelta(days=9))
        )
    answer = await call(client, sent.body("phone", success=True, phone=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")


@pytest.mark.parametrize(
    "token",
    ["wrong", "", "0" * 64],
)
async def test_a_wrong_callback_token_is_401_and_changes_nothing(client, ws, engine, token):
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    body = sent.body("phone", success=True, phone=PHONE)
    body["callback_token"] = token or token_for(sent.request_id("linkedin"))
    answer = await call(client, body)
    assert_error(answer, 401, "invalid_callback_token")
    assert await snapshot(engine, sent.id) == before


async def test_a_workspace_can_require_the_callback_token(client, ws, engine):
    required = await client.patch(
        "/api/v1/workspace/settings", json={"require_callback_token": True}, headers=ws.headers
    )
    assert required.status_code == 200, required.text
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    body = sent.body("phone", success=True, phone=PHONE)
    without = {k: v for k, v in body.items() if k != "callback_token"}
    assert_error(await call(client, without), 401, "missing_callback_token")
    placeholder = {**without, "callback_token": "{{callback_token}}"}
    assert_error(await call(client, placeholder), 401, "missing_callback_token")
    assert await snapshot(engine, sent.id) == before
    assert_applied(await call(client, body), sent.id, "phone", "enriched")


async def test_without_a_token_requirement_a_missing_token_is_fine(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = {k: v for k, v in sent.body("phone", phone=PHONE).items() if k != "callback_token"}
    assert_applied(await call(client, body), sent.id, "phone", "enriched")


async def test_an_ambiguous_kind_is_422(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    no_kind = await call(client, {"lead_id": sent.id, "success": True})
    assert_error(no_kind, 422, "ambiguous_kind")
    both = await call(client, {"lead_id": sent.id, "phone": PHONE, "linkedin_url": PROFILE})
    assert_error(both, 422, "ambiguous_kind")
    assert await snapshot(engine, sent.id) == before


async def test_a_kind_is_inferred_when_only_one_request_is_open(client, ws, engine):
    sent = await sent_lead(client, ws, engine, kinds=("phone",), linkedin_url=PROFILE + "-x")
    answer = await call(client, {"lead_id": sent.id, "success": False})
    assert_applied(answer, sent.id, "phone", "not_found")


async def test_a_kind_contradicting_the_request_is_422(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = sent.body("phone", linkedin_url=PROFILE)
    body["enrichment_type"] = "linkedin"
    assert_error(await call(client, body), 422, "kind_mismatch")


async def test_an_unknown_kind_is_422(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = sent.body("phone", phone=PHONE)
    body["enrichment_type"] = "email"
    detail = assert_error(await call(client, body), 422, "unknown_kind")
    assert "'email'" in detail


@pytest.mark.parametrize(
    ("kind_value", "kind"),
    [
        ("phone", "phone"),
        ("Phone", "phone"),
        ("mobile", "phone"),
        ("Mobile Phone", "phone"),
        ("linkedin", "linkedin"),
        ("LinkedIn", "linkedin"),
        ("linkedin_url", "linkedin"),
    ],
)
async def test_the_kind_may_be_spelled_the_ways_clay_users_spell_it(
    client, ws, engine, kind_value, kind
):
    sent = await sent_lead(client, ws, engine)
    value = {"phone": PHONE} if kind == "phone" else {"linkedin_url": PROFILE}
    answer = await call(client, {"lead_id": sent.id, "enrichmentType": kind_value, **value})
    assert_applied(answer, sent.id, kind, "enriched")


# === Outcome ================================================================================


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        *[
            (s, "enriched")
            for s in [
                "success",
                "succeeded",
                "found",
                "enriched",
                "complete",
                "completed",
                "ok",
                "SUCCESS",
                " Success ",
            ]
        ],
        *[
            (s, "not_found")
            for s in [
                "not_found",
                "not found",
                "Not Found",
                "no_match",
                "No Result",
                "no result",
                "empty",
            ]
        ],
        *[(s, "failed") for s in ["error", "failed", "failure", "Failed"]],
    ],
)
async def test_a_status_string_names_the_outcome(client, ws, engine, status, outcome):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", status=status, phone=PHONE))
    assert_applied(answer, sent.id, "phone", outcome)
    lead = await get_lead(client, ws, sent.id)
    assert lead["enrichment"]["phone"]["status"] == outcome
    assert lead["phone"] == (PHONE_E164 if outcome == "enriched" else None)


@pytest.mark.parametrize("flag", [True, "true", "TRUE", "True", 1, "1", "yes", "Yes"])
async def test_a_truthy_success_flag_and_a_value_fills_the_field(client, ws, engine, flag):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", success=flag, phone=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")
    assert (await get_lead(client, ws, sent.id))["phone"] == PHONE_E164


@pytest.mark.parametrize("flag", [False, "false", "FALSE", 0, "0", "no", "No"])
async def test_a_false_success_flag_is_not_found_or_failed_with_a_message(client, ws, engine, flag):
    sent = await sent_lead(client, ws, engine)
    plain = await call(client, sent.body("phone", success=flag))
    assert_applied(plain, sent.id, "phone", "not_found")
    other = await call(client, sent.body("linkedin", success=flag, error="provider timed out"))
    assert_applied(other, sent.id, "linkedin", "failed")
    assert (await request_row(engine, sent.request_id("linkedin"))).reason == "provider timed out"


async def test_an_unreadable_success_flag_is_422(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    detail = assert_error(
        await call(client, sent.body("phone", success="maybe")), 422, "invalid_success"
    )
    assert "maybe" in detail


async def test_without_status_or_flag_a_value_means_enriched(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", mobile=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")


async def test_without_status_or_flag_no_value_means_not_found(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone"))
    assert_applied(answer, sent.id, "phone", "not_found")
    assert (await request_row(engine, sent.request_id("phone"))).reason == "empty_value"


async def test_an_unknown_status_is_422_naming_it_and_changes_nothing(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    before = await snapshot(engine, sent.id)
    answer = await call(client, sent.body("phone", status="pending_review", phone=PHONE))
    detail = assert_error(answer, 422, "unknown_status")
    assert "pending_review" in detail
    assert await snapshot(engine, sent.id) == before


@pytest.mark.parametrize("key", ["error", "message", "reason", "Error Message"])
async def test_clays_error_message_becomes_the_requests_reason(client, ws, engine, key):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", status="failed", **{key: "Out of credits"}))
    assert_applied(answer, sent.id, "phone", "failed")
    lead = await get_lead(client, ws, sent.id)
    assert lead["enrichment"]["phone"]["reason"] == "Out of credits"
    [event] = [e for e in await lead_events(engine, sent.id) if e.event == "enrichment_failed"]
    assert event.request_id == sent.request_id("phone")
    assert event.detail == "Out of credits"


# === Values =================================================================================


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        None,
        "null",
        "None",
        "N/A",
        "n/a",
        "undefined",
        "-",
        "{{Mobile Phone}}",
        [],
        ["", "N/A"],
    ],
)
async def test_success_with_a_placeholder_value_is_not_found_empty_value(client, ws, engine, value):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", success=True, phone=value))
    assert_applied(answer, sent.id, "phone", "not_found")
    lead = await get_lead(client, ws, sent.id)
    assert lead["phone"] is None
    assert lead["enrichment"]["phone"]["reason"] == "empty_value"


async def test_a_company_page_is_not_found_invalid_value_and_kept_only_in_the_journal(
    client, ws, engine
):
    sent = await sent_lead(client, ws, engine)
    company = "https://www.linkedin.com/company/acme-widgets-99"
    mark = await journal_mark(engine)
    answer = await call(client, sent.body("linkedin", success=True, linkedin_url=company))
    assert_applied(answer, sent.id, "linkedin", "not_found")
    lead = await get_lead(client, ws, sent.id)
    assert lead["linkedin_url"] is None
    assert lead["enrichment"]["linkedin"]["reason"] == "invalid_value"
    row = await request_row(engine, sent.request_id("linkedin"))
    assert row.result_value is None
    for event in await lead_events(engine, sent.id):
        assert "acme-widgets-99" not in repr(tuple(event))
    [journal] = await journal_since(engine, mark)
    assert "acme-widgets-99" in journal.body_redacted


async def test_an_impossible_phone_number_is_not_found_invalid_value(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    mark = await journal_mark(engine)
    answer = await call(client, sent.body("phone", success=True, phone="+1 415 555 01"))
    assert_applied(answer, sent.id, "phone", "not_found")
    lead = await get_lead(client, ws, sent.id)
    assert lead["phone"] is None
    assert lead["enrichment"]["phone"]["reason"] == "invalid_value"
    for event in await lead_events(engine, sent.id):
        assert "555 01" not in repr(tuple(event)) and "1415555" not in repr(tuple(event))
    [journal] = await journal_since(engine, mark)
    assert journal.outcome == "applied"
    assert "555 01" not in journal.body_redacted  # the journal masks phones too


@pytest.mark.parametrize(
    "fields",
    [
        {"phone": ["", "N/A", PHONE, "+1 212 555 0100"]},
        {"phone": {"number": PHONE, "type": "mobile"}},
        {"phone": {"value": PHONE}},
        {"mobile_phone": PHONE},
        {"Phone Number": PHONE},
        {"directPhone": "(415) 555-0132"},
        {"work_phone": "415.555.0132 ext 12"},
        {"mobile": 14155550132},
        {"phone": "N/A", "mobile": PHONE},
    ],
)
async def test_a_phone_value_is_read_from_every_documented_shape(client, ws, engine, fields):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", success=True, **fields))
    assert_applied(answer, sent.id, "phone", "enriched")
    assert (await get_lead(client, ws, sent.id))["phone"] == PHONE_E164


@pytest.mark.parametrize(
    "fields",
    [
        {"linkedin_url": "linkedin.com/in/ada-lovelace/"},
        {"LinkedIn Profile": "https://uk.linkedin.com/in/ada-lovelace?trk=x"},
        {"profile_url": {"url": PROFILE}},
        {"person_linkedin_url": [None, PROFILE]},
        {"linkedin": "HTTPS://WWW.LINKEDIN.COM/in/ada-lovelace/"},
    ],
)
async def test_a_linkedin_value_is_read_from_every_documented_shape(client, ws, engine, fields):
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("linkedin", success=True, **fields))
    assert_applied(answer, sent.id, "linkedin", "enriched")
    assert (await get_lead(client, ws, sent.id))["linkedin_url"].lower() == PROFILE


async def test_a_phone_without_country_code_is_read_in_the_workspaces_region(
    client, engine, workspace_factory
):
    ws = await workspace_factory(eligibility="all_leads", default_region="GB")
    sent = await sent_lead(client, ws, engine)
    answer = await call(client, sent.body("phone", phone="020 7946 0958"))
    assert_applied(answer, sent.id, "phone", "enriched")
    assert (await get_lead(client, ws, sent.id))["phone"] == "+442079460958"


# === Apply ==================================================================================


async def test_a_callback_with_success_true_and_no_status_fills_the_phone(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    mark = await journal_mark(engine)
    answer = await call(client, sent.body("phone", success=True, phone=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")
    lead = await get_lead(client, ws, sent.id)
    assert lead["phone"] == PHONE_E164
    summary = lead["enrichment"]["phone"]
    assert (summary["status"], summary["reason"]) == ("enriched", None)
    assert summary["completed_at"] is not None
    row = await request_row(engine, sent.request_id("phone"))
    assert row.result_value == PHONE_E164
    events = [e for e in await lead_events(engine, sent.id) if e.source == "clay_callback"]
    assert [(e.event, e.field) for e in events] == [
        ("enrichment_enriched", "phone"),
        ("field_set", "phone"),
    ]
    assert events[1].new_value == "+1******0132"
    assert all(e.request_id == sent.request_id("phone") for e in events)
    [journal] = await journal_since(engine, mark)
    assert (journal.outcome, journal.http_status, journal.kind) == ("applied", 200, "phone")
    assert (journal.request_id, journal.lead_id, journal.workspace_id) == (
        sent.request_id("phone"),
        sent.id,
        ws.id,
    )
    assert PHONE_E164 not in journal.body_redacted
    assert SECRET not in journal.body_redacted
    assert token_for(sent.request_id("phone")) not in journal.body_redacted
    assert sent.lead["email"] not in (journal.body_redacted or "")


async def test_fill_only_keeps_a_different_existing_value_and_records_the_conflict(
    client, ws, engine
):
    sent = await sent_lead(client, ws, engine)
    # The host app learnt a phone while Clay was working on it.
    await create_lead(client, ws, email=sent.lead["email"], phone="+1 415 555 0177")
    answer = await call(client, sent.body("phone", success=True, phone=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")
    lead = await get_lead(client, ws, sent.id)
    assert lead["phone"] == "+14155550177"
    [conflict] = [e for e in await lead_events(engine, sent.id) if e.event == "conflict"]
    assert (conflict.field, conflict.old_value, conflict.new_value) == (
        "phone",
        "+1******0177",
        "+1******0132",
    )
    assert conflict.request_id == sent.request_id("phone")


async def test_the_same_profile_spelled_differently_is_no_conflict(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    await create_lead(client, ws, email=sent.lead["email"], linkedin_url=PROFILE)
    answer = await call(
        client, sent.body("linkedin", linkedin_url="http://uk.linkedin.com/in/Ada-Lovelace/")
    )
    assert_applied(answer, sent.id, "linkedin", "enriched")
    events = await lead_events(engine, sent.id)
    assert not [e for e in events if e.event == "conflict"]
    assert (await get_lead(client, ws, sent.id))["linkedin_url"] == PROFILE


async def test_a_repeated_callback_is_a_duplicate_and_changes_nothing(client, ws, engine):
    sent = await sent_lead(client, ws, engine)
    body = sent.body("phone", success=True, phone=PHONE)
    assert_applied(await call(client, body), sent.id, "phone", "enriched")
    before = await snapshot(engine, sent.id)
    mark = await journal_mark(engine)
    again = await call(client, body)
    assert again.status_code == 200
    assert again.json() == {
        "result": "duplicate",
        "lead_id": sent.id,
        "kind": "phone",
        "status": "enriched",
    }
    assert await snapshot(engine, sent.id) == before
    [journal] = await journal_since(engine, mark)
    assert (journal.outcome, journal.http_status) == ("duplicate", 200)


@pytest.mark.parametrize("first", [{"status": "not_found"}, {"status": "failed", "error": "boom"}])
async def test_a_success_after_a_miss_upgrades_the_request_and_the_lead(client, ws, engine, first):
    sent = await sent_lead(client, ws, engine, kinds=("phone",), linkedin_url=PROFILE)
    assert_applied(
        await call(client, sent.body("phone", **first)), sent.id, "phone", first["status"]
    )
    missed = await get_lead(client, ws, sent.id)
    assert missed["enrichment_status"] == first["status"]
    repeat = await call(client, sent.body("phone", **first))
    assert repeat.json()["result"] == "duplicate"

    answer = await call(client, sent.body("phone", success=True, phone=PHONE))
    assert_applied(answer, sent.id, "phone", "enriched")
    lead = await get_lead(client, ws, sent.id)
    assert lead["phone"] == PHONE_E164
    assert lead["enrichment"]["phone"]["status"] == "enriched"
    assert lead["enrichment"]["phone"]["reason"] is None
    assert lead["enrichment_status"] == "enriched"


@pytest.mark.parametrize(
    "later",
    [
        {"status": "not_found"},
        {"status": "failed", "error": "late failure"},
        {"success": False},
        {"success": True, "phone": "+1 212 555 0100"},
        {"success": True, "phone": "N/A"},
    ],
)
async def test_nothing_downgrades_an_enriched_request(client, ws, engine, later):
    sent = await sent_lead(client, ws, engine)
    assert_applied(
        await call(client, sent.body("phone", phone=PHONE)), sent.id, "phone", "enriched"
    )
    before = await snapshot(engine, sent.id)
    answer = await call(client, sent.body("phone", **later))
    assert answer.status_code == 200
    assert answer.json()["result"] == "duplicate"
    assert answer.json()["status"] == "enriched"
    assert await snapshot(engine, sent.id) == before


async def test_reposting_a_lead_in_its_cooldown_keeps_its_result_and_a_late_success_counts(
    client, ws, engine
):
    sent = await sent_lead(client, ws, engine, kinds=("phone",), linkedin_url=PROFILE)
    miss = await call(client, sent.body("phone", status="not_found"))
    assert_applied(miss, sent.id, "phone", "not_found")
    again = await create_lead(client, ws, email=sent.lead["email"], title="CFO")
    assert again["enrichment_status"] == "not_found"
    late = await call(client, sent.body("phone", success=True, phone=PHONE))
    assert_applied(late, sent.id, "phone", "enriched")
    lead = await get_lead(client, ws, sent.id)
    assert lead["phone"] == PHONE_E164
    assert lead["enrichment_status"] == "enriched"
    assert lead["enrichment"]["phone"]["status"] == "enriched"


@pytest.mark.parametrize(
    ("linkedin", "phone", "rollup"),
    [
        ({"linkedin_url": PROFILE}, {"phone": PHONE}, "enriched"),
        ({"linkedin_url": PROFILE}, {"status": "not_found"}, "enriched"),
        ({"status": "failed", "error": "x"}, {"phone": PHONE}, "enriched"),
        ({"status": "not_found"}, {"status": "not_found"}, "not_found"),
        ({"status": "failed", "error": "x"}, {"status": "not_found"}, "failed"),
        ({"status": "failed"}, {"status": "failed"}, "failed"),
        ({"status": "not_found"}, None, "pending"),
        ({"linkedin_url": PROFILE}, None, "pending"),
    ],
)
async def test_the_lead_status_rolls_up_once_both_kinds_close(
    client, ws, engine, linkedin, phone, rollup
):
    sent = await sent_lead(client, ws, engine)
    await call(client, sent.body("linkedin", **linkedin))
    if phone is not None:
        await call(client, sent.body("phone", **phone))
    lead = await get_lead(client, ws, sent.id)
    assert lead["enrichment_status"] == rollup
    async with engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(m.lead.c.enrichment_status).where(m.lead.c.id == sent.id))
        ).scalar_one()
    assert stored == rollup


# === Logs ===================================================================================


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_path: Path

    def output(self) -> tuple[str, str]:
        return self.stderr_path.read_text(), self.stdout_path.read_text()


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Process]:
    """``clayloop serve`` as its own process, logging to files we can read."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLAYLOOP_")},
        "CLAYLOOP_DATABASE_URL": database_url,
        "CLAYLOOP_CALLBACK_SECRETS": f" {SECRET} ,second-secret-abc\n",
        "CLAYLOOP_TOKEN_KEY": "test-token-key",
        "CLAYLOOP_LOG_FORMAT": "json",
        "CLAYLOOP_LOG_LEVEL": "INFO",
    }
    stderr_path, stdout_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with stderr_path.open("wb") as err, stdout_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("clayloop")),
                "serve",
                "--no-worker",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=err,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("clayloop serve did not start: " + stderr_path.read_text())
        time.sleep(0.1)
    yield Process(url, proc, stderr_path, stdout_path)
    proc.terminate()
    proc.wait(timeout=15)


def _json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            found.append(item)
    return found


async def test_each_callback_logs_one_json_line_with_masked_email_and_phone(
    client, ws, engine, served
):
    email = unique_email("jane")
    phone = unique_phone()
    sent = await sent_lead(client, ws, engine, email=email)
    async with httpx.AsyncClient(base_url=served.url) as http:
        applied = await http.post(
            CALLBACK,
            json={"email": email, "enrichment_type": "phone", "success": True, "phone": phone},
            headers={"x-clay-signature": SECRET},
        )
        assert applied.status_code == 200, applied.text
        failed = await http.post(
            CALLBACK,
            json={
                "request_id": sent.request_id("linkedin"),
                "success": False,
                "error": f"no match for {email}",
            },
            headers={"Authorization": "Bearer second-secret-abc"},
        )
        assert failed.status_code == 200, failed.text
        missing = await http.post(
            CALLBACK,
            json={"email": unique_email("ghost"), "phone": phone},
            headers={"x-clay-signature": SECRET},
        )
        assert missing.status_code == 404
        refused = await http.post(
            CALLBACK, json={"email": email}, headers={"x-clay-signature": "guess"}
        )
        assert refused.status_code == 401

    async def all_four_logged() -> bool:
        stderr = served.output()[0]
        return len([x for x in _json_lines(stderr) if x.get("event") == "callback"]) >= 4

    await eventually(all_four_logged, 10)
    stderr, stdout = served.output()
    everything = stderr + stdout
    for secret_text in (SECRET, "second-secret-abc", "guess"):
        assert secret_text not in everything
    assert email not in everything
    assert phone not in everything and phone[2:] not in everything

    lines = [line for line in _json_lines(stderr) if line.get("event") == "callback"]
    assert len(lines) == 4, stderr + "\n--- stdout ---\n" + stdout
    first = lines[0]
    assert first["outcome"] == "applied"
    assert first["http_status"] == 200
    assert first["kind"] == "phone"
    assert first["lead_id"] == sent.id
    assert first["request_id"] == sent.request_id("phone")
    assert first["auth"] == "secret:x-clay-signature"
    assert isinstance(first["duration_ms"], float | int)
    assert first["email"] == email[0] + "***@example.com"
    assert first["value"] == phone[:2] + "*" * 6 + phone[-4:]
    assert lines[1]["auth"] == "bearer"
    assert [line["http_status"] for line in lines] == [200, 200, 404, 401]

    warnings = [line for line in _json_lines(stderr) if line.get("event") == "secrets_trimmed"]
    assert len(warnings) == 1 and warnings[0]["count"] == 2


async def test_updating_an_enriched_lead_keeps_its_enriched_status(client, ws, engine):
    sent = await sent_lead(client, ws, engine, kinds=("phone",), linkedin_url=PROFILE)
    answer = await call(client, sent.body("phone", success=True, phone="+1 415 555 0132"))
    assert answer.json()["status"] == "enriched"
    again = await client.post(
        "/api/v1/leads",
        json={"email": sent.lead["email"], "sentiment": "Meeting Requested"},
        headers=ws.headers,
    )
    assert again.status_code == 200
    body = again.json()
    assert body["enrichment_status"] == "enriched"
    assert body["enrichment"]["phone"]["request_id"] == sent.request_id("phone")
    assert body["enrichment"]["phone"]["status"] == "enriched"


async def test_a_lead_in_its_cooldown_records_the_reason_and_is_not_sent_again(client, ws, engine):
    sent = await sent_lead(client, ws, engine, kinds=("phone",), linkedin_url=PROFILE)
    assert_applied(
        await call(client, sent.body("phone", status="not_found")), sent.id, "phone", "not_found"
    )
    again = await create_lead(client, ws, email=sent.lead["email"], title="CFO")
    assert again["enrichment"]["phone"]["status"] == "skipped"
    assert again["enrichment"]["phone"]["reason"] == "cooldown"
    assert again["enrichment"]["phone"]["request_id"] != sent.request_id("phone")
    assert again["enrichment_status"] == "not_found"
    # Re-evaluating again is quiet: no second cooldown record.
    third = await create_lead(client, ws, email=sent.lead["email"], title="CEO")
    assert third["enrichment"]["phone"]["request_id"] == again["enrichment"]["phone"]["request_id"]


async def test_a_sender_leaving_mid_body_is_logged_not_an_error(served):
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /api/webhooks/clay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"x-clay-signature: {SECRET}\r\nContent-Length: 500\r\n\r\n".encode()
            + b'{"request_id": "'
        )
    async with httpx.AsyncClient(base_url=served.url) as http:
        # The server is still there, and answers the next callback.
        after = await http.post(CALLBACK, json={}, headers={"x-clay-signature": "guess"})
        assert after.status_code == 401
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = [line.get("event") for line in _json_lines(served.output()[0])]
            if "callback_disconnected" in events:
                break
            await asyncio.sleep(0.1)
    assert "callback_disconnected" in events
    assert "unhandled_error" not in events
