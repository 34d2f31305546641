"""Graph's error answers: ``{"error": {"code", "message", "innerError"}}`` with an HTTP status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from exchange_sim.store import StoreError

# Store (Exchange) response codes -> the HTTP status Graph answers them with.
STORE_STATUS = {
    "ErrorItemNotFound": 404,
    "ErrorFolderNotFound": 404,
    "ErrorNonExistentMailbox": 404,
    "ErrorInvalidIdMalformed": 400,
    "ErrorFolderExists": 409,
    "ErrorIrresolvableConflict": 412,
    "ErrorAccessDenied": 403,
    "ErrorDeleteDistinguishedFolder": 400,
    "ErrorInvalidRecurrence": 400,
    "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange": 400,
    "ErrorCalendarOccurrenceIsDeletedFromRecurrence": 404,
    "ErrorInvalidOperation": 400,
}
FOLDER_EXISTS_TEXT = "A folder with the specified name already exists."


class GraphError(Exception):
    """An error answer. ``headers`` go out with it (Retry-After, WWW-Authenticate...)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @classmethod
    def from_store(cls, err: StoreError) -> GraphError:
        message = FOLDER_EXISTS_TEXT if err.code == "ErrorFolderExists" else err.message
        return cls(STORE_STATUS.get(err.code, 400), err.code, message)


def error_body(code: str, message: str, request_id: str | None = None, client_request_id: str | None = None) -> dict[str, Any]:
    request_id = request_id or str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found_segment(segment: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
