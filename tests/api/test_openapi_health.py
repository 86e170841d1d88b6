"""What an operator reads first: /healthz, the OpenAPI document and its /docs page."""

from __future__ import annotations

from typing import Any

import pytest

from clayloop import __version__

ERROR_REF = "#/components/schemas/ErrorOut"
# Endpoints that only answer 200 (no input, no credential).
NO_ERRORS = {("get", "/metrics")}


async def operations(client: Any) -> list[tuple[str, str, dict[str, Any]]]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    spec = answer.json()
    return [
        (method, path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


async def test_healthz_answers_200_when_the_database_answers(client, settings):
    answer = await client.get("/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["database"] in {"sqlite", "postgresql"}


async def test_docs_answers_200_with_the_swagger_page(client):
    answer = await client.get("/docs")
    assert answer.status_code == 200
    assert "swagger" in answer.text.lower()
    assert "/openapi.json" in answer.text


async def test_openapi_lists_every_endpoint_of_the_loop(client):
    listed = {(method, path) for method, path, _ in await operations(client)}
    for expected in [
        ("post", "/api/webhooks/clay"),
        ("post", "/api/v1/leads"),
        ("get", "/api/v1/leads"),
        ("get", "/api/v1/leads/{lead_id}"),
        ("get", "/api/v1/workspace"),
        ("patch", "/api/v1/workspace/settings"),
        ("post", "/api/v1/workspace/callback-secrets"),
        ("get", "/healthz"),
    ]:
        assert expected in listed


async def test_every_endpoint_is_described_with_its_error_answers(client):
    for method, path, op in await operations(client):
        assert op.get("summary") or op.get("description"), (method, path)
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        if (method, path) in NO_ERRORS:
            continue
        assert errors, f"{method.upper()} {path} documents no error answer"
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            # Every error the app sends is {"error", "detail"}: the document must say so.
            assert schema == {"$ref": ERROR_REF}, (method, path, code, schema)
            assert response["description"], (method, path, code)


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", "/api/webhooks/clay", {"200", "400", "401", "404", "413", "422"}),
        ("post", "/api/v1/leads", {"200", "201", "400", "401", "409", "422"}),
        ("get", "/api/v1/leads", {"200", "401", "404", "422"}),
        ("get", "/api/v1/leads/{lead_id}", {"200", "401", "404"}),
        ("get", "/healthz", {"200", "503"}),
    ],
)
async def test_the_answers_each_endpoint_gives_are_documented(client, method, path, codes):
    [op] = [op for m, p, op in await operations(client) if (m, p) == (method, path)]
    assert codes <= set(op["responses"])


async def test_the_callback_endpoint_documents_its_request_body(client):
    [op] = [op for m, p, op in await operations(client) if (m, p) == ("post", "/api/webhooks/clay")]
    request = op["requestBody"]
    assert "x-clay-signature" in request["description"]
    example = request["content"]["application/json"]["example"]
    assert {"request_id", "lead_id", "enrichment_type", "callback_token"} <= set(example)
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/CallbackOut"}


async def test_the_error_schema_is_error_and_detail(client):
    spec = (await client.get("/openapi.json")).json()
    schema = spec["components"]["schemas"]["ErrorOut"]
    assert set(schema["required"]) == {"error", "detail"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
