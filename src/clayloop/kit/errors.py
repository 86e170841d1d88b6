"""The one error type every interface answers with: a code and a human detail."""

from __future__ import annotations


class ClayloopError(Exception):
    """An error a caller can act on.

    HTTP answers it as ``{"error": code, "detail": detail}`` with ``status``;
    the CLI prints the detail and exits non-zero.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def not_found(code: str, detail: str) -> ClayloopError:
    """A 404 with the given code."""
    return ClayloopError(404, code, detail)


def invalid(code: str, detail: str) -> ClayloopError:
    """A 422 with the given code."""
    return ClayloopError(422, code, detail)
