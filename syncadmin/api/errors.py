"""API error answers: bad input 400 (field-level), unknown ids 404, illegal transitions 409.

Errors raised by models and services are translated here once, so no view needs a try block
for them and none of them surfaces as a 500.
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from synccore.crmio import BatchClash
from synccore.mailbox.base import MailboxError
from synccore.runtime.service import (
    IllegalTransition,
    StartFailed,
    UnknownCursor,
    UnknownUser,
    UserStillActive,
)


def _validation_detail(exc: DjangoValidationError) -> dict | list:
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if key == "__all__" else key): value
            for key, value in exc.message_dict.items()
        }
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_validation_detail(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    elif isinstance(exc, IllegalTransition | UserStillActive | BatchClash):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, StartFailed):
        # The environment is now "failed" with this reason; the request itself was well-formed.
        return Response({"detail": str(exc)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    elif isinstance(exc, UnknownUser):
        exc = exceptions.ValidationError({"user": [str(exc)]})
    elif isinstance(exc, UnknownCursor):
        exc = exceptions.ValidationError({"cursor": [str(exc)]})
    elif isinstance(exc, MailboxError):
        # Exchange answered with an error (or not at all): the gateway failed, not this server.
        return Response({"detail": f"Exchange: {exc}"}, status=status.HTTP_502_BAD_GATEWAY)
    elif isinstance(exc, ProtectedError):
        return Response(
            {"detail": "Other records still refer to this one; remove those first."},
            status=status.HTTP_409_CONFLICT,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        # Always field-level: a bare list of messages belongs to no field.
        response.data = {"non_field_errors": response.data}
    return response
