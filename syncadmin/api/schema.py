"""OpenAPI: every operation documents its error answers, not only its success."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer("Error", fields={"detail": serializers.CharField()})

VALIDATION_ERROR = {
    "type": "object",
    "description": "Field-level messages: each field (or non_field_errors) maps to a list of messages.",
    "additionalProperties": True,
}


class SyncAutoSchema(AutoSchema):
    def _get_parameters(self):
        # Class-wide path parameters (the nested {id}) apply only where the path has them.
        return [p for p in super()._get_parameters() if p["in"] != "path" or f"{{{p['name']}}}" in self.path]

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        errors = {
            "400": (VALIDATION_ERROR, "Bad input: field-level messages."),
            "401": (ErrorSerializer, "No or invalid credentials."),
            "403": (ErrorSerializer, "Your role does not allow this."),
        }
        if "{" in self.path or self._get_paginator() is not None:
            # Unknown ids, and pages past the end of a paginated list.
            errors["404"] = (ErrorSerializer, "No such object (or page).")
        for code, (schema, description) in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=schema, description=description), code
                )
        return responses
