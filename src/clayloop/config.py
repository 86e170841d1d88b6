"""Settings, read from ``CLAYLOOP_*`` environment variables and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./clayloop.db"


def split_secrets(raw: str | list[str] | None) -> tuple[list[str], int]:
    """Split a comma-separated secret list, trimming whitespace around every secret.

    Returns the non-empty secrets and how many of them had whitespace trimmed
    (a trailing newline in a secret once took a production system down, so the
    caller warns about every trim).
    """
    if raw is None:
        return [], 0
    items = raw if isinstance(raw, list) else raw.split(",")
    secrets: list[str] = []
    trimmed = 0
    for item in items:
        clean = item.strip()
        if clean != item and clean:
            trimmed += 1
        if clean:
            secrets.append(clean)
    return secrets, trimmed


class Settings(BaseSettings):
    """Every knob clayloop reads from its environment. See README "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="CLAYLOOP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    callback_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Server key for callback tokens (HMAC of the request id). Generated and kept in the
    # database when unset, so tokens survive restarts without any setup.
    token_key: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    max_callback_bytes: int = 256 * 1024
    callback_journal_retention_days: int = 30
    # Sized for the API's concurrent requests plus the in-process worker: a request
    # waiting for a pooled connection is the tail latency DESIGN.md measured (p99
    # 250-450 ms). On PostgreSQL, Clay callbacks use a pool of their own, sized for the
    # concurrent callbacks admitted. serve holds at most the sum of the three, a
    # separate worker process db_pool_size + db_max_overflow.
    db_pool_size: int = 16
    db_max_overflow: int = 8
    db_callback_pool_size: int = 32
    db_callback_write_lanes: int = Field(default=1, ge=1, le=64)
    # Worker
    worker_poll_seconds: float = 0.2
    lease_seconds: float = 60.0
    max_send_attempts: int = 6
    send_timeout_seconds: float = 15.0
    callback_timeout_seconds: float = 24 * 3600.0
    callback_timeout_resends: int = 1
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 900.0
    dispatch_batch: int = 20
    send_concurrency: int = 20
    sweep_interval_seconds: float = 5.0
    monitor_interval_seconds: float = 15.0
    # A row sent this long ago without a callback means the Clay HTTP API action is broken.
    callback_stall_seconds: float = 900.0

    # Filled by the validators; read by the start-up warnings.
    trimmed_secret_count: int = 0

    @field_validator("callback_secrets", mode="before")
    @classmethod
    def _split_callback_secrets(cls, value: object) -> list[str]:
        if value is None or isinstance(value, str | list):
            secrets, _ = split_secrets(value)
            return secrets
        raise ValueError("CLAYLOOP_CALLBACK_SECRETS must be a comma-separated list")

    @field_validator("token_key", mode="before")
    @classmethod
    def _strip_token_key(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_public_url(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _count_trimmed(cls, data: Any) -> Any:
        """Count secrets that arrived with surrounding whitespace (for the start-up warning)."""
        if not isinstance(data, dict):
            return data
        raw = data.get("callback_secrets")
        trimmed = split_secrets(raw)[1] if isinstance(raw, str | list) else 0
        token = data.get("token_key")
        if isinstance(token, str) and token.strip() and token.strip() != token:
            trimmed += 1
        return {**data, "trimmed_secret_count": trimmed}

    @model_validator(mode="after")
    def _lease_outlives_a_send(self) -> Settings:
        # A lease that can expire while its POST is still waiting for Clay lets another
        # worker claim and send the same row again.
        if self.lease_seconds <= self.send_timeout_seconds:
            raise ValueError(
                "CLAYLOOP_LEASE_SECONDS must be longer than CLAYLOOP_SEND_TIMEOUT_SECONDS"
            )
        return self

    @property
    def callback_url(self) -> str:
        """The public URL of the callback endpoint, as written into outgoing rows."""
        return f"{self.public_url}/api/webhooks/clay"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
