"""Settings and database URLs: the forms people type, and secrets with stray whitespace."""

from __future__ import annotations

import pytest

from clayloop.config import Settings, split_secrets
from clayloop.kit.db import DatabaseURLError, to_async_url


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgres://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://db/app", "postgresql+asyncpg://db/app"),
        ("  sqlite:///x.db\n", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_people_type_get_the_async_driver(typed: str, expected: str) -> None:
    assert to_async_url(typed) == expected


@pytest.mark.parametrize("bad", ["mysql://db/app", "not a url", ""])
def test_unsupported_database_urls_are_refused_with_what_to_write(bad: str) -> None:
    with pytest.raises(DatabaseURLError, match="sqlite"):
        to_async_url(bad)


def test_secrets_are_split_and_trimmed_and_the_trims_counted() -> None:
    assert split_secrets(" a , b\n,,c") == (["a", "b", "c"], 2)
    assert split_secrets(None) == ([], 0)


def test_settings_trim_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAYLOOP_CALLBACK_SECRETS", "first-secret\n, second-secret ")
    monkeypatch.setenv("CLAYLOOP_TOKEN_KEY", " key\n")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.callback_secrets == ["first-secret", "second-secret"]
    assert settings.token_key == "key"
    assert settings.trimmed_secret_count == 3


def test_settings_without_secrets_have_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAYLOOP_CALLBACK_SECRETS", raising=False)
    assert Settings(_env_file=None).callback_secrets == []  # type: ignore[call-arg]


def test_a_lease_shorter_than_a_send_is_refused() -> None:
    with pytest.raises(ValueError, match="LEASE_SECONDS"):
        Settings(_env_file=None, lease_seconds=5, send_timeout_seconds=15)  # type: ignore[call-arg]
