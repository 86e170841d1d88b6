"""Who may call POST /api/webhooks/clay: secrets in headers, HMAC of the raw body, rotation.

Every credential check happens over real HTTP against a live server, and every refusal is
checked for what it must not do: change the lead, the request, or keep the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from clayloop.app import create_app
from clayloop.config import Settings
from clayloop.kit.live import LiveServer
from clayloop.kit.migrate import upgrade_async
from tests.conftest import SECRET, WS, make_settings
from tests.support import database
from tests.support.helpers import (
    create_lead,
    journal_mark,
    journal_since,
    lead_events,
    mark_sent,
    phone_body,
    request_row,
    unique_email,
)

CALLBACK = "/api/webhooks/clay"
PHONE = "+1 415 555 0132"


async def sent_phone_request(client: httpx.AsyncClient, ws: WS, engine: Any) -> dict[str, Any]:
    """A lead whose phone request was sent to Clay; returns the lead resource."""
    lead = await create_lead(client, ws, email=unique_email())
    await mark_sent(engine, lead["enrichment"]["phone"]["request_id"])
    return lead


def raw(body: dict[str, Any]) -> bytes:
    """Body bytes the way a hand-written sender might lay them out (odd whitespace)."""
    return json.dumps(body, indent=3, separators=(" ,  ", " :   ")).encode()


def hmac_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def hmac_b64(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


async def assert_nothing_changed(
    client: httpx.AsyncClient, ws: WS, engine: Any, lead: dict[str, Any]
) -> None:
    after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
    assert after["phone"] is None
    assert after["enrichment"]["phone"]["status"] == "sent"
    assert after["enrichment_status"] == "pending"
    assert [e.event for e in await lead_events(engine, lead["id"])] == [
        "created",
        "request_opened",
        "request_opened",
    ]


@pytest.fixture
def start_server(database_url: str) -> Iterator[Any]:
    """Start extra live servers with their own settings; all stop after the test."""
    started: list[LiveServer] = []

    def start(settings: Settings) -> LiveServer:
        live = LiveServer(create_app(settings)).start()
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture
async def empty_database_url(tmp_path: Any) -> AsyncIterator[str]:
    """A migrated database with no workspace in it (so no workspace secret either)."""
    if database.backend() == "postgresql":
        url = await database.create_postgres_database()
        await upgrade_async(url)
        yield url
        await database.drop_postgres_database(url)
    else:
        url = database.sqlite_url(tmp_path)
        await upgrade_async(url)
        yield url


# --- Accepted credentials ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "method"),
    [
        ("x-clay-signature", SECRET, "secret:x-clay-signature"),
        ("x-webhook-signature", SECRET, "secret:x-webhook-signature"),
        ("x-clay-secret", SECRET, "secret:x-clay-secret"),
        ("x-webhook-secret", SECRET, "secret:x-webhook-secret"),
        ("X-Clay-Secret", SECRET, "secret:x-clay-secret"),
        ("Authorization", f"Bearer {SECRET}", "bearer"),
        ("Authorization", f"bearer {SECRET}", "bearer"),
    ],
)
async def test_the_secret_in_any_accepted_header_is_a_valid_credential(
    client, ws, engine, header, value, method
):
    lead = await sent_phone_request(client, ws, engine)
    mark = await journal_mark(engine)
    answer = await client.post(CALLBACK, json=phone_body(lead), headers={header: value})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "applied"
    [journal] = await journal_since(engine, mark)
    assert journal.auth_method == method
    assert journal.http_status == 200


@pytest.mark.parametrize("header", ["x-clay-signature", "x-webhook-signature"])
@pytest.mark.parametrize(
    "sign",
    [
        lambda data: hmac_hex(SECRET, data),
        lambda data: hmac_hex(SECRET, data).upper(),
        lambda data: "sha256=" + hmac_hex(SECRET, data),
        lambda data: hmac_b64(SECRET, data),
        lambda data: "sha256=" + hmac_b64(SECRET, data),
        lambda data: hmac_b64(SECRET, data).rstrip("="),
    ],
    ids=["hex", "HEX", "sha256=hex", "base64", "sha256=base64", "base64-unpadded"],
)
async def test_an_hmac_of_the_raw_body_bytes_is_a_valid_credential(
    client, ws, engine, header, sign
):
    lead = await sent_phone_request(client, ws, engine)
    data = raw(phone_body(lead))
    mark = await journal_mark(engine)
    answer = await client.post(CALLBACK, content=data, headers={header: sign(data)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "applied"
    [journal] = await journal_since(engine, mark)
    assert journal.auth_method == f"hmac:{header}"


async def test_an_hmac_over_re_serialized_json_is_refused(client, ws, engine):
    lead = await sent_phone_request(client, ws, engine)
    body = phone_body(lead)
    sent_bytes = raw(body)
    # Same JSON value, different bytes: a signature must cover exactly what was sent.
    signature = hmac_hex(SECRET, json.dumps(body).encode())
    answer = await client.post(
        CALLBACK, content=sent_bytes, headers={"x-clay-signature": signature}
    )
    assert answer.status_code == 401, answer.text
    await assert_nothing_changed(client, ws, engine, lead)


async def test_an_hmac_in_a_plain_secret_header_is_refused(client, ws, engine):
    lead = await sent_phone_request(client, ws, engine)
    data = raw(phone_body(lead))
    answer = await client.post(
        CALLBACK, content=data, headers={"x-clay-secret": hmac_hex(SECRET, data)}
    )
    assert answer.status_code == 401
    await assert_nothing_changed(client, ws, engine, lead)


async def test_an_hmac_keyed_with_another_secret_is_refused(client, ws, engine):
    lead = await sent_phone_request(client, ws, engine)
    data = raw(phone_body(lead))
    answer = await client.post(
        CALLBACK, content=data, headers={"x-clay-signature": hmac_hex(SECRET + "x", data)}
    )
    assert answer.status_code == 401
    await assert_nothing_changed(client, ws, engine, lead)


# --- Refused credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-clay-signature": "wrong-secret"},
        {"x-clay-signature": SECRET + "x"},
        {"x-clay-signature": SECRET[:-1]},
        {"x-clay-signature": SECRET.upper()},
        {"x-webhook-secret": "wrong-secret"},
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": SECRET},
        {"x-api-key": SECRET},
        {"x-clay-webhook-auth": SECRET},
    ],
    ids=[
        "none",
        "wrong",
        "suffixed",
        "truncated",
        "wrong-case",
        "wrong-webhook-secret",
        "wrong-bearer",
        "basic-scheme",
        "no-scheme",
        "unknown-header",
        "outgoing-auth-header",
    ],
)
async def test_a_missing_or_wrong_credential_is_401_changes_nothing_and_keeps_no_body(
    client, ws, engine, headers
):
    lead = await sent_phone_request(client, ws, engine)
    mark = await journal_mark(engine)
    answer = await client.post(CALLBACK, json=phone_body(lead), headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized"
    assert SECRET not in answer.text
    await assert_nothing_changed(client, ws, engine, lead)
    [journal] = await journal_since(engine, mark)
    assert journal.http_status == 401
    assert journal.outcome == "unauthorized"
    assert journal.auth_method is None
    assert journal.body_redacted is None
    assert journal.request_id is None and journal.lead_id is None
    assert len(journal.body_sha256) == 64


async def test_a_refused_callback_is_refused_before_its_body_is_read_as_json(client, engine):
    mark = await journal_mark(engine)
    answer = await client.post(CALLBACK, content=b"{not json", headers={"x-clay-signature": "x"})
    assert answer.status_code == 401  # not 400: nothing is parsed before authentication
    [journal] = await journal_since(engine, mark)
    assert journal.outcome == "unauthorized"


# --- Rotation and workspace secrets --------------------------------------------------------


async def test_two_server_secrets_both_work_during_a_rotation(
    client, ws, engine, database_url, start_server
):
    live = start_server(make_settings(database_url, callback_secrets="old-secret-1,new-secret-2"))
    async with httpx.AsyncClient(base_url=live.url) as http:
        for secret in ("old-secret-1", "new-secret-2"):
            lead = await sent_phone_request(client, ws, engine)
            answer = await http.post(
                CALLBACK, json=phone_body(lead), headers={"x-clay-secret": secret}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["result"] == "applied"
        lead = await sent_phone_request(client, ws, engine)
        retired = await http.post(
            CALLBACK, json=phone_body(lead), headers={"x-clay-secret": SECRET}
        )
        assert retired.status_code == 401


async def test_secrets_are_trimmed_of_surrounding_whitespace(
    client, ws, engine, database_url, start_server
):
    settings = make_settings(database_url, callback_secrets=" spaced-secret-1 , spaced-secret-2\n")
    assert settings.callback_secrets == ["spaced-secret-1", "spaced-secret-2"]
    assert settings.trimmed_secret_count == 2  # the start-up warning says how many
    live = start_server(settings)
    async with httpx.AsyncClient(base_url=live.url) as http:
        for secret in ("spaced-secret-1", "spaced-secret-2"):
            lead = await sent_phone_request(client, ws, engine)
            data = raw(phone_body(lead))
            by_value = await http.post(CALLBACK, content=data, headers={"x-clay-signature": secret})
            assert by_value.status_code == 200, by_value.text
            lead = await sent_phone_request(client, ws, engine)
            data = raw(phone_body(lead))
            signed = await http.post(
                CALLBACK, content=data, headers={"x-clay-signature": hmac_hex(secret, data)}
            )
            assert signed.status_code == 200, signed.text


def test_trimming_secrets_from_the_environment_is_counted_for_the_warning(monkeypatch):
    monkeypatch.setenv("CLAYLOOP_CALLBACK_SECRETS", " s1 , s2\n,s3")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.callback_secrets == ["s1", "s2", "s3"]
    assert settings.trimmed_secret_count == 2


async def test_a_workspace_secret_works_for_that_workspaces_leads(client, ws, engine):
    made = await client.post("/api/v1/workspace/callback-secrets", headers=ws.headers)
    assert made.status_code == 201, made.text
    secret = made.json()["callback_secret"]
    lead = await sent_phone_request(client, ws, engine)
    mark = await journal_mark(engine)
    answer = await client.post(
        CALLBACK, json=phone_body(lead), headers={"x-clay-signature": secret}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "applied"
    [journal] = await journal_since(engine, mark)
    assert journal.workspace_id == ws.id


async def test_a_workspace_secret_cannot_touch_another_workspaces_lead(
    client, ws, engine, workspace_factory
):
    intruder = await workspace_factory(eligibility="all_leads")
    made = await client.post("/api/v1/workspace/callback-secrets", headers=intruder.headers)
    secret = made.json()["callback_secret"]
    lead = await sent_phone_request(client, ws, engine)
    headers = {"x-clay-signature": secret}

    by_request = await client.post(CALLBACK, json=phone_body(lead), headers=headers)
    assert by_request.status_code == 404, by_request.text
    assert by_request.json()["error"] == "unknown_request"

    by_lead = {k: v for k, v in phone_body(lead).items() if k not in ("request_id",)}
    answer = await client.post(CALLBACK, json=by_lead, headers=headers)
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_lead"

    by_email = {"email": lead["email"], "enrichment_type": "phone", "phone": PHONE}
    answer = await client.post(CALLBACK, json=by_email, headers=headers)
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_lead"

    await assert_nothing_changed(client, ws, engine, lead)
    # The server secret still reaches it: the 404s were about the credential's scope.
    ok = await client.post(CALLBACK, json=phone_body(lead), headers={"x-clay-signature": SECRET})
    assert ok.status_code == 200


async def test_a_server_without_any_secret_refuses_every_callback(
    client, ws, engine, empty_database_url, start_server
):
    live = start_server(make_settings(empty_database_url, callback_secrets=[]))
    async with httpx.AsyncClient(base_url=live.url) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200
        for headers in ({}, {"x-clay-signature": SECRET}, {"Authorization": "Bearer"}):
            answer = await http.post(CALLBACK, json={"success": True}, headers=headers)
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"] == "unauthorized"
            assert "no callback secret is configured" in answer.json()["detail"]
        data = b'{"success": true}'
        signed = await http.post(
            CALLBACK, content=data, headers={"x-clay-signature": hmac_hex("", data)}
        )
        assert signed.status_code == 401


async def test_an_empty_secret_never_matches(client, ws, engine, database_url, start_server):
    live = start_server(make_settings(database_url, callback_secrets=" , ,"))
    lead = await sent_phone_request(client, ws, engine)
    async with httpx.AsyncClient(base_url=live.url) as http:
        data = raw(phone_body(lead))
        for headers in (
            {"x-clay-signature": hmac_hex("", data)},
            {"x-clay-secret": '""'},
        ):
            answer = await http.post(CALLBACK, content=data, headers=headers)
            assert answer.status_code == 401
    await assert_nothing_changed(client, ws, engine, lead)


async def test_the_request_row_is_untouched_by_a_refused_callback(client, ws, engine):
    lead = await sent_phone_request(client, ws, engine)
    request_id = lead["enrichment"]["phone"]["request_id"]
    before = await request_row(engine, request_id)
    await client.post(CALLBACK, json=phone_body(lead), headers={"x-clay-signature": "nope"})
    after = await request_row(engine, request_id)
    assert after._mapping == before._mapping
