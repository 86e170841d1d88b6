"""The Clay simulator, exercised over real HTTP: webhook sources in, HTTP API callbacks out."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import phonenumbers
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from clayloop.clay import sim_cli
from clayloop.clay.simulator import (
    WEBHOOK_PATH_PREFIX,
    ClaySimulator,
    SimConfig,
    SimTable,
    decide,
    is_http_token,
)
from clayloop.kit.live import live_server

LINKEDIN_PREFIX = "https://www.linkedin.com/in/"


# --------------------------------------------------------------------------- helpers


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@dataclass
class Receiver:
    """A stand-in for clayloop's callback endpoint that records every request."""

    url: str = ""
    status: int = 200
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            self.calls.append(
                {"headers": dict(request.headers), "raw": raw, "body": json.loads(raw)}
            )
        return JSONResponse({"ok": self.status < 400}, status_code=self.status)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [c["body"] for c in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    app = Starlette(routes=[Route("/api/webhooks/clay", recv.handle, methods=["POST"])])
    with live_server(app) as server:
        recv.url = f"{server.url}/api/webhooks/clay"
        yield recv


@dataclass
class Running:
    """A simulator served on a real port, with a client pointed at it."""

    sim: ClaySimulator
    url: str
    http: httpx.Client

    def post(self, table: SimTable, body: Any, token: str | None = None) -> httpx.Response:
        headers = {"x-clay-webhook-auth": token or table.auth_token or ""}
        return self.http.post(table.path, json=body, headers=headers)

    def settle(self, callbacks: int | None = None) -> None:
        """Wait until no callback is pending (and, if given, that many were sent)."""
        wait_for(lambda: self.sim.pending_callbacks == 0)
        if callbacks is not None:
            wait_for(lambda: self.sim.stats()["callbacks_sent"] == callbacks)


@pytest.fixture
def start_sim() -> Iterator[Callable[..., Running]]:
    with ExitStack() as stack:

        def start(**options: Any) -> Running:
            options.setdefault("callback_delay_s", 0.0)
            sim = ClaySimulator(SimConfig(**options))
            server = stack.enter_context(live_server(sim.build_app()))
            http = stack.enter_context(httpx.Client(base_url=server.url, timeout=5))
            return Running(sim, server.url, http)

        yield start


def lead_row(
    receiver: Receiver,
    request_id: str = "req-1",
    *,
    kind: str = "linkedin",
    email: str = "ada@example.com",
    **extra: Any,
) -> dict[str, Any]:
    """An outgoing row shaped like DESIGN.md's wire contract."""
    return {
        "request_id": request_id,
        "lead_id": f"lead-{request_id}",
        "workspace_id": "ws-1",
        "enrichment_type": kind,
        "callback_url": receiver.url,
        "callback_token": f"tok-{request_id}",
        "email": email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "full_name": "Ada Lovelace",
        "company_name": "Analytical Engines",
        "company_domain": "example.com",
        "title": "Engineer",
        "linkedin_url": "https://www.linkedin.com/in/ada",
        "phone": None,
        **extra,
    }


def ids(request_id: str, kind: str = "linkedin") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "lead_id": f"lead-{request_id}",
        "enrichment_type": kind,
        "callback_token": f"tok-{request_id}",
    }


def send_outcomes(run: Running, receiver: Receiver, kind: str = "linkedin") -> dict[str, Any]:
    """Send one row forced to each outcome; return the callback body per outcome."""
    table = run.sim.add_table(kind)
    for tag in ("found", "notfound", "error"):
        row = lead_row(receiver, tag, kind=kind, email=f"ada+{tag}@example.com")
        assert run.post(table, row).status_code == 200
    run.settle(callbacks=3)
    by_row = {r["request_id"]: r for r in run.sim.rows()}
    bodies = receiver.bodies()
    assert len(bodies) == 3
    for body in bodies:
        # Every body that arrived is the one the simulator recorded for its row.
        assert body in [r["callback_body"] for r in by_row.values()]
    return {tag: by_row[tag]["callback_body"] | {"_value": by_row[tag]["value"]} for tag in by_row}


def strip_value(body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    body = dict(body)
    return body, body.pop("_value")


# --------------------------------------------------------------------------- webhook source


def test_a_row_is_accepted_with_a_small_ok_body(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin")

    response = run.post(table, lead_row(receiver))

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert table.path.startswith(WEBHOOK_PATH_PREFIX)
    assert uuid.UUID(table.path.removeprefix(WEBHOOK_PATH_PREFIX)).version == 4
    stats = run.sim.stats()
    assert stats["accepted"] == 1
    assert stats["submissions"] == {table.id: 1}


def test_an_unknown_webhook_is_404(start_sim: Any) -> None:
    run = start_sim()
    response = run.http.post(f"{WEBHOOK_PATH_PREFIX}{uuid.uuid4()}", json={})
    assert response.status_code == 404


def test_the_auth_token_is_checked_when_the_table_has_one(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin", auth_token="s3cret")

    missing = run.http.post(table.path, json=lead_row(receiver))
    wrong = run.post(table, lead_row(receiver), token="nope")
    right = run.post(table, lead_row(receiver), token="s3cret")

    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert right.status_code == 200
    stats = run.sim.stats()
    assert stats["rejected"] == {"401": 2}
    assert stats["submissions"] == {table.id: 1}


def test_bodies_over_100_kb_are_refused_with_413(start_sim: Any) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin")

    def body_of(size: int) -> bytes:
        empty = len(json.dumps({"pad": ""}))
        return json.dumps({"pad": "x" * (size - empty)}).encode()

    limit = 100 * 1024
    headers = {"content-type": "application/json"}
    at_limit = run.http.post(table.path, content=body_of(limit), headers=headers)
    over = run.http.post(table.path, content=body_of(limit + 1), headers=headers)

    assert at_limit.status_code == 200
    assert over.status_code == 413
    assert run.sim.stats()["rejected"] == {"413": 1}


@pytest.mark.parametrize("body", [b"[{}]", b"not json", b"\xff\xfe", b'"a string"'])
def test_a_body_that_is_not_a_json_object_is_400(start_sim: Any, body: bytes) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin")
    response = run.http.post(table.path, content=body)
    assert response.status_code == 400
    assert run.sim.stats()["accepted"] == 0


def test_rows_beyond_the_burst_get_429_with_retry_after(start_sim: Any) -> None:
    run = start_sim(rate_per_s=0.01, burst=20)
    linkedin = run.sim.add_table("linkedin")
    phone = run.sim.add_table("phone")  # same Clay workspace: same bucket
    elsewhere = run.sim.add_table("other", workspace="acme")

    answers = [run.post(linkedin if i % 2 else phone, {"n": i}).status_code for i in range(20)]
    limited = run.post(linkedin, {"n": 20})

    assert answers == [200] * 20
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert run.post(phone, {"n": 21}).status_code == 429
    assert run.post(elsewhere, {"n": 0}).status_code == 200
    assert run.sim.stats()["rejected"] == {"429": 2}


def test_the_bucket_refills_at_the_configured_rate(start_sim: Any) -> None:
    run = start_sim(rate_per_s=50, burst=1)
    table = run.sim.add_table("linkedin")
    assert run.post(table, {}).status_code == 200
    assert run.post(table, {}).status_code == 429
    time.sleep(0.05)
    assert run.post(table, {}).status_code == 200


def test_retry_after_can_be_left_out(start_sim: Any) -> None:
    run = start_sim(rate_per_s=0.01, burst=1, send_retry_after=False)
    table = run.sim.add_table("linkedin")
    run.post(table, {})
    limited = run.post(table, {})
    assert limited.status_code == 429
    assert "retry-after" not in limited.headers


def test_past_the_lifetime_limit_the_webhook_refuses_with_403(start_sim: Any) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin", limit=2)

    answers = [run.post(table, {"n": i}) for i in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 403]
    assert answers[2].json()["error"] == "submission_limit_reached"
    assert "submission limit" in answers[2].json()["message"]
    assert run.sim.stats()["submissions"] == {table.id: 2}


def test_the_default_lifetime_limit_is_50000(start_sim: Any) -> None:
    run = start_sim()
    assert run.sim.add_table("linkedin").limit == 50_000


# --------------------------------------------------------------------------- fault injection


def test_an_injected_500_answers_the_next_n_submissions_to_that_table(start_sim: Any) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin")
    other = run.sim.add_table("phone")

    created = run.http.post("/_sim/faults", json={"table": table.id, "status": 500, "count": 2})
    assert created.status_code == 201
    assert run.post(other, {}).status_code == 200
    assert [run.post(table, {}).status_code for _ in range(3)] == [500, 500, 200]
    assert run.http.get("/_sim/faults").json() == []
    assert run.sim.stats()["rejected"] == {"500": 2}


def test_an_injected_fault_without_a_table_hits_any_table(start_sim: Any) -> None:
    run = start_sim()
    first, second = run.sim.add_table("a"), run.sim.add_table("b")
    run.sim.inject_fault(status=503, count=2)
    assert [run.post(first, {}).status_code, run.post(second, {}).status_code] == [503, 503]
    assert run.post(first, {}).status_code == 200


def test_a_fault_on_an_unknown_table_is_refused(start_sim: Any) -> None:
    run = start_sim()
    answer = run.http.post("/_sim/faults", json={"table": "tbl_nope", "status": 500})
    assert answer.status_code == 404


def test_an_injected_delay_makes_a_client_time_out(start_sim: Any) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin")
    run.sim.inject_fault(table=table.id, delay_s=0.5)

    with pytest.raises(httpx.ReadTimeout):
        run.http.post(table.path, json={}, timeout=0.1)
    assert run.post(table, {}).status_code == 200


# --------------------------------------------------------------------------- callbacks


def test_a_callback_carries_content_type_and_the_secret_header(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(callback_secret="cb-secret")
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    run.settle(callbacks=1)

    [call] = receiver.calls
    assert call["headers"]["content-type"] == "application/json"
    assert call["headers"]["x-clay-signature"] == "cb-secret"


def test_the_secret_header_name_is_configurable(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(callback_secret="cb-secret", callback_header="x-service-token")
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    run.settle(callbacks=1)
    headers = receiver.calls[0]["headers"]
    assert headers["x-service-token"] == "cb-secret"
    assert "x-clay-signature" not in headers


def test_success_flag_style_is_designs_recommended_body(start_sim: Any, receiver: Receiver) -> None:
    bodies = send_outcomes(start_sim(style="success_flag"), receiver)

    found, value = strip_value(bodies["found"])
    assert value.startswith(LINKEDIN_PREFIX + "ada-lovelace-")
    assert found == ids("found") | {"success": True, "linkedin_url": value}
    assert strip_value(bodies["notfound"])[0] == ids("notfound") | {"success": False}
    assert strip_value(bodies["error"])[0] == ids("error") | {
        "success": False,
        "error": "Provider timeout",
    }


def test_status_style_says_success_not_found_or_error(start_sim: Any, receiver: Receiver) -> None:
    bodies = send_outcomes(start_sim(style="status"), receiver, kind="phone")

    found, value = strip_value(bodies["found"])
    assert found == ids("found", "phone") | {"status": "success", "phone": value}
    assert strip_value(bodies["notfound"])[0] == ids("notfound", "phone") | {"status": "not_found"}
    assert strip_value(bodies["error"])[0] == ids("error", "phone") | {
        "status": "error",
        "error": "Provider timeout",
    }


def test_clay_columns_style_uses_clay_column_names(start_sim: Any, receiver: Receiver) -> None:
    bodies = send_outcomes(start_sim(style="clay_columns"), receiver, kind="phone")

    found, value = strip_value(bodies["found"])
    assert found == {
        "Request ID": "found",
        "Lead ID": "lead-found",
        "Enrichment Type": "phone",
        "Callback Token": "tok-found",
        "Mobile Phone": value,
        "Status": "success",
    }
    assert strip_value(bodies["notfound"])[0]["Status"] == "not_found"
    assert "Mobile Phone" not in bodies["notfound"]
    assert strip_value(bodies["error"])[0]["Status"] == "error"


def test_clay_columns_style_names_the_linkedin_column(start_sim: Any, receiver: Receiver) -> None:
    bodies = send_outcomes(start_sim(style="clay_columns"), receiver, kind="linkedin")
    found, value = strip_value(bodies["found"])
    assert found["LinkedIn URL"] == value


def test_placeholders_style_reports_not_found_as_success_with_a_placeholder(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(style="placeholders")
    table = run.sim.add_table("phone")
    for i in range(4):
        email = f"lead{i}+notfound@example.com"
        run.post(table, lead_row(receiver, f"r{i}", kind="phone", email=email))
    run.settle(callbacks=4)

    by_id = {b["request_id"]: b for b in receiver.bodies()}
    assert [by_id[f"r{i}"]["phone"] for i in range(4)] == ["N/A", "", None, "-"]
    assert all(body["success"] is True for body in by_id.values())


def test_nested_style_wraps_the_body_in_data(start_sim: Any, receiver: Receiver) -> None:
    bodies = send_outcomes(start_sim(style="nested"), receiver)

    found, value = strip_value(bodies["found"])
    assert found == {"data": ids("found") | {"success": True, "linkedin_url": value}}
    assert strip_value(bodies["notfound"])[0] == {"data": ids("notfound") | {"success": False}}


def test_no_ids_style_sends_only_the_email_and_the_value(
    start_sim: Any, receiver: Receiver
) -> None:
    bodies = send_outcomes(start_sim(style="no_ids"), receiver, kind="phone")

    found, value = strip_value(bodies["found"])
    assert found == {
        "email": "ada+found@example.com",
        "linkedin_url": "https://www.linkedin.com/in/ada",
        "phone": value,
        "success": True,
    }
    assert strip_value(bodies["notfound"])[0] == {
        "email": "ada+notfound@example.com",
        "linkedin_url": "https://www.linkedin.com/in/ada",
        "success": False,
    }


def test_no_ids_style_for_linkedin_leaves_out_the_rows_linkedin_url(
    start_sim: Any, receiver: Receiver
) -> None:
    bodies = send_outcomes(start_sim(style="no_ids"), receiver, kind="linkedin")
    found, value = strip_value(bodies["found"])
    assert found == {"email": "ada+found@example.com", "linkedin_url": value, "success": True}


def test_mixed_style_rotates_through_every_style(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(style="mixed")
    table = run.sim.add_table("linkedin")
    for i in range(7):
        run.post(table, lead_row(receiver, f"r{i}", email=f"a{i}+found@example.com"))
    run.settle(callbacks=7)

    styles = [row["style"] for row in run.sim.rows()]
    assert styles == [
        "success_flag",
        "status",
        "clay_columns",
        "placeholders",
        "nested",
        "no_ids",
        "success_flag",
    ]
    bodies = receiver.bodies()
    assert sum("data" in b for b in bodies) == 1
    assert sum("Request ID" in b for b in bodies) == 1


def test_duplicate_mode_sends_the_identical_callback_twice(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(duplicate_rate=1.0)
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    run.settle(callbacks=2)

    first, second = receiver.calls
    assert first["raw"] == second["raw"]
    [row] = run.sim.rows()
    assert row["duplicate"] is True
    assert [a["status"] for a in row["callbacks"]] == [200, 200]
    assert run.sim.stats()["duplicates"] == 1


def test_drop_mode_never_calls_back(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(drop_rate=1.0)
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver, "dropped"))
    assert run.http.post("/_sim/config", json={"drop_rate": 0}).status_code == 200
    run.post(table, lead_row(receiver, "kept"))
    run.settle(callbacks=1)

    assert [b["request_id"] for b in receiver.bodies()] == ["kept"]
    dropped = run.sim.rows()[0]
    assert dropped["dropped"] is True
    assert dropped["callbacks"] == []
    assert run.sim.stats()["dropped"] == 1


def test_late_mode_calls_back_after_the_late_delay(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(late_rate=1.0, late_delay_s=0.3)
    table = run.sim.add_table("linkedin")
    started = time.monotonic()
    run.post(table, lead_row(receiver))
    wait_for(lambda: len(receiver.calls) == 1)

    assert time.monotonic() - started >= 0.3
    assert run.sim.rows()[0]["late"] is True


@pytest.mark.parametrize("name", ["Content-Type:", "Content Type", "x-sig(1)", "x-é"])
def test_a_misconfigured_header_name_records_nodes_error_and_makes_no_call(
    start_sim: Any, receiver: Receiver, name: str
) -> None:
    run = start_sim(misconfigured_header=name)
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    wait_for(lambda: run.sim.stats()["misconfig_errors"] == 1)
    run.settle()

    [row] = run.sim.rows()
    assert row["misconfig_error"] == f'Header name must be a valid HTTP token ["{name}"]'
    assert row["callbacks"] == []
    assert receiver.calls == []
    assert run.sim.stats()["callbacks_sent"] == 0


def test_the_documented_misconfiguration_message_is_exact(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(misconfigured_header="Content-Type:")
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    run.settle()
    assert run.sim.rows()[0]["misconfig_error"] == (
        'Header name must be a valid HTTP token ["Content-Type:"]'
    )


def test_an_invalid_secret_header_name_fails_the_same_way(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(callback_secret="s", callback_header="x-clay-signature:")
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    wait_for(lambda: run.sim.stats()["misconfig_errors"] == 1)
    assert run.sim.rows()[0]["misconfig_error"] == (
        'Header name must be a valid HTTP token ["x-clay-signature:"]'
    )
    assert receiver.calls == []


def test_a_control_character_in_the_secret_fails_like_node(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(callback_secret="abc\n")
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    wait_for(lambda: run.sim.stats()["misconfig_errors"] == 1)
    assert run.sim.rows()[0]["misconfig_error"] == (
        'Invalid character in header content ["x-clay-signature"]'
    )


def test_a_misconfigured_header_that_is_a_valid_token_still_calls_back(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(misconfigured_header="content-type")
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    run.settle(callbacks=1)
    assert receiver.calls[0]["headers"]["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("x-clay-signature", True),
        ("Content-Type", True),
        ("!#$%&'*+-.^_`|~09azAZ", True),
        ("Content-Type:", False),
        ("x clay", False),
        ("", False),
        ('x"y', False),
        ("x\ty", False),
    ],
)
def test_header_names_are_checked_by_nodes_token_rules(name: str, valid: bool) -> None:
    assert is_http_token(name) is valid


def test_email_tags_override_the_outcome(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(found=0, not_found=1, error=0)
    table = run.sim.add_table("linkedin")
    emails = {
        "f": "x+found@example.com",
        "n": "x+notfound@example.com",
        "e": "x+error@example.com",
        "plain": "x@example.com",
    }
    for request_id, email in emails.items():
        run.post(table, lead_row(receiver, request_id, email=email))
    run.settle(callbacks=4)

    outcomes = {r["request_id"]: r["outcome"] for r in run.sim.rows()}
    assert outcomes == {"f": "found", "n": "not_found", "e": "error", "plain": "not_found"}


def test_found_phone_numbers_are_valid_us_numbers(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(found=1, not_found=0, error=0)
    table = run.sim.add_table("phone")
    for i in range(20):
        run.post(table, lead_row(receiver, f"p{i}", kind="phone"))
    run.settle(callbacks=20)

    phones = [b["phone"] for b in receiver.bodies()]
    assert len(phones) == 20
    for phone in phones:
        assert phone.startswith("+1415555") and len(phone) == 12
        parsed = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(parsed)
        assert phonenumbers.region_code_for_number(parsed) == "US"
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == phone


def test_outcomes_follow_the_seed_and_request_id_and_the_configured_mix() -> None:
    config = SimConfig()
    rows = [{"request_id": f"r{i}", "enrichment_type": "phone"} for i in range(3000)]
    first = [decide(row, 1, config).outcome for row in rows]
    again = [decide(row, 99, config).outcome for row in rows]
    other_seed = [decide(row, 1, SimConfig(seed=1)).outcome for row in rows]

    assert first == again
    assert first != other_seed
    shares = {o: first.count(o) / len(first) for o in ("found", "not_found", "error")}
    assert shares["found"] == pytest.approx(0.7, abs=0.03)
    assert shares["not_found"] == pytest.approx(0.2, abs=0.03)
    assert shares["error"] == pytest.approx(0.1, abs=0.03)


def test_each_callback_attempt_records_clayloops_answer(start_sim: Any, receiver: Receiver) -> None:
    receiver.status = 401
    run = start_sim()
    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver))
    run.settle(callbacks=1)

    [attempt] = run.sim.rows()[0]["callbacks"]
    assert attempt["status"] == 401
    assert json.loads(attempt["body"]) == {"ok": False}
    assert attempt["error"] is None
    assert run.sim.stats()["callbacks_by_status"] == {"401": 1}


def test_a_callback_that_cannot_connect_records_the_error(start_sim: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    run = start_sim()
    table = run.sim.add_table("linkedin")
    row = {"request_id": "r", "callback_url": f"http://127.0.0.1:{closed_port}/cb"}
    run.post(table, row)
    run.settle(callbacks=1)

    [attempt] = run.sim.rows()[0]["callbacks"]
    assert attempt["status"] is None
    assert attempt["error"].startswith("ConnectError")
    assert run.sim.stats()["callback_errors"] == 1


def test_a_row_without_callback_url_is_kept_but_not_called_back(start_sim: Any) -> None:
    run = start_sim()
    table = run.sim.add_table("linkedin")
    assert run.post(table, {"email": "ada@example.com"}).status_code == 200
    assert run.sim.rows()[0]["note"] == "row has no http(s) callback_url"
    assert run.sim.stats()["no_callback_url"] == 1


# --------------------------------------------------------------------------- control API


def test_tables_can_be_created_over_http_with_an_absolute_url(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim()
    created = run.http.post(
        "/_sim/tables", json={"name": "phone", "auth_token": "t0k", "workspace": "w2", "limit": 5}
    )

    assert created.status_code == 201
    body = created.json()
    assert body["url"].startswith(f"{run.url}{WEBHOOK_PATH_PREFIX}")
    assert body["auth_token"] == "t0k"
    accepted = run.http.post(
        body["url"], json=lead_row(receiver), headers={"x-clay-webhook-auth": "t0k"}
    )
    assert accepted.status_code == 200
    [listed] = run.http.get("/_sim/tables").json()
    assert listed["submissions"] == 1
    assert listed["limit"] == 5


def test_a_table_without_a_name_is_refused(start_sim: Any) -> None:
    run = start_sim()
    assert run.http.post("/_sim/tables", json={"auth_token": "x"}).status_code == 400


def test_tables_from_config_exist_at_start(start_sim: Any) -> None:
    run = start_sim(tables=[{"name": "linkedin", "auth_token": "a"}, {"name": "phone"}])
    listed = run.http.get("/_sim/tables").json()
    assert [(t["name"], t["auth_token"]) for t in listed] == [("linkedin", "a"), ("phone", None)]


def test_config_changes_at_runtime_and_bad_changes_are_refused(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim()
    changed = run.http.post("/_sim/config", json={"style": "status", "callback_secret": "new"})
    assert changed.status_code == 200
    assert changed.json()["style"] == "status"

    table = run.sim.add_table("linkedin")
    run.post(table, lead_row(receiver, email="a+found@example.com"))
    run.settle(callbacks=1)
    assert receiver.bodies()[0]["status"] == "success"
    assert receiver.calls[0]["headers"]["x-clay-signature"] == "new"

    assert run.http.post("/_sim/config", json={"style": "bogus"}).status_code == 400
    assert run.http.post("/_sim/config", json={"record_rows": False}).status_code == 400
    assert run.http.post("/_sim/config", json={"unknown": 1}).status_code == 400
    assert run.http.post("/_sim/config", json=[1]).status_code == 400
    assert run.http.get("/_sim/config").json()["style"] == "status"


def test_reset_clears_rows_counters_and_pending_callbacks(
    start_sim: Any, receiver: Receiver
) -> None:
    run = start_sim(callback_delay_s=30)
    table = run.sim.add_table("linkedin", limit=1)
    run.post(table, lead_row(receiver))
    run.post(table, lead_row(receiver))
    assert run.sim.pending_callbacks == 1

    assert run.http.post("/_sim/reset").json() == {"status": "reset"}

    wait_for(lambda: run.sim.pending_callbacks == 0)
    assert run.http.get("/_sim/rows").json() == []
    stats = run.http.get("/_sim/stats").json()
    assert stats["accepted"] == 0
    assert stats["rejected"] == {}
    assert stats["submissions"] == {table.id: 0}
    assert run.post(table, lead_row(receiver)).status_code == 200


def test_rows_and_stats_report_what_happened(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(rate_per_s=0.01, burst=2)
    table = run.sim.add_table("phone")
    run.post(table, lead_row(receiver, "r1", kind="phone", email="a+found@example.com"))
    run.post(table, lead_row(receiver, "r2", kind="phone", email="a+error@example.com"))
    run.post(table, lead_row(receiver, "r3", kind="phone"))
    run.settle(callbacks=2)

    rows = run.http.get("/_sim/rows").json()
    assert [(r["table_id"], r["request_id"], r["lead_id"]) for r in rows] == [
        (table.id, "r1", "lead-r1"),
        (table.id, "r2", "lead-r2"),
    ]
    assert rows[0]["enrichment_type"] == "phone"
    assert rows[0]["outcome"] == "found" and rows[0]["value"].startswith("+1")
    assert rows[1]["outcome"] == "error" and rows[1]["value"] is None
    assert rows[0]["received_at"].endswith("+00:00")
    assert set(rows[0]["callbacks"][0]) == {"at", "status", "body", "error"}

    response = run.http.get("/_sim/stats")
    stats = response.json()
    assert response.text == json.dumps(stats, sort_keys=True, separators=(",", ":"))
    assert stats["accepted"] == 2
    assert stats["rejected"] == {"429": 1}
    assert stats["outcomes"] == {"error": 1, "found": 1}
    assert stats["callbacks_sent"] == 2
    assert stats["callbacks_by_status"] == {"200": 2}
    assert stats["misconfig_errors"] == 0


def test_record_rows_off_keeps_counters_only(start_sim: Any, receiver: Receiver) -> None:
    run = start_sim(record_rows=False)
    table = run.sim.add_table("linkedin")
    for i in range(3):
        run.post(table, lead_row(receiver, f"r{i}"))
    run.settle(callbacks=3)

    assert run.sim.rows() == []
    assert run.sim.stats()["accepted"] == 3
    assert len(receiver.calls) == 3


def test_shutdown_cancels_pending_callbacks(receiver: Receiver) -> None:
    sim = ClaySimulator(SimConfig(callback_delay_s=60))
    table = sim.add_table("linkedin")
    with live_server(sim.build_app()) as server:
        httpx.post(f"{server.url}{table.path}", json=lead_row(receiver))
        assert sim.pending_callbacks == 1
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert sim.pending_callbacks == 0
    assert receiver.calls == []


def test_ids_and_webhook_urls_follow_the_seed() -> None:
    first = ClaySimulator(SimConfig(seed=3)).add_table("linkedin")
    again = ClaySimulator(SimConfig(seed=3)).add_table("linkedin")
    other = ClaySimulator(SimConfig(seed=4)).add_table("linkedin")
    assert (first.id, first.path) == (again.id, again.path)
    assert first.path != other.path


# --------------------------------------------------------------------------- CLI


def test_the_cli_prints_each_tables_url_and_token_and_serves_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        served["app"], served["kwargs"] = app, kwargs

    monkeypatch.setattr(sim_cli.uvicorn, "run", fake_run)
    result = CliRunner().invoke(
        sim_cli.sim_app,
        ["clay", "--port", "9911", "--tables", "linkedin,phone", "--style", "nested"],
        env={"CLAYLOOP_SIM_CALLBACK_SECRET": "from-env"},
    )

    assert result.exit_code == 0, result.output
    assert result.output.count(f"http://127.0.0.1:9911{WEBHOOK_PATH_PREFIX}") == 2
    assert sim_cli.table_token(0, "linkedin") in result.output
    assert sim_cli.table_token(0, "phone") in result.output
    assert served["kwargs"] == {"host": "127.0.0.1", "port": 9911, "log_level": "warning"}
    with live_server(served["app"]) as server:
        config = httpx.get(f"{server.url}/_sim/config").json()
    assert config["callback_secret"] == "from-env"
    assert config["style"] == "nested"


def test_the_cli_refuses_an_impossible_outcome_mix() -> None:
    result = CliRunner().invoke(
        sim_cli.sim_app, ["clay", "--found", "0", "--not-found", "0", "--error", "0"]
    )
    assert result.exit_code != 0
