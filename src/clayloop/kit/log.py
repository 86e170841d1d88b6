"""Structured logging: JSON lines when not on a terminal, readable lines on one.

Nothing logged here may carry a secret, a raw callback body or an unmasked
email or phone: callers pass masked values (see :mod:`clayloop.kit.redact`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the standard library logging once per process."""
    global _configured
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(message)s")
    _configured = True


def get_logger(name: str) -> Any:
    """A structlog logger bound with the component name."""
    # Initial values go through get_logger so the proxy stays lazy: binding at import
    # time would freeze structlog's default configuration into module-level loggers.
    return structlog.get_logger(name, component=name)
