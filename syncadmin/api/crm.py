"""CRM integration endpoints: /environments/{id}/crm/{companies|contacts|employees|activities}/."""

from __future__ import annotations

from django.http import Http404
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from syncadmin.api import crm_serializers as cs
from syncadmin.api.schema import ErrorSerializer
from syncadmin.api.views import ENVIRONMENT_PARAM, EnvironmentScoped
from synccore import crmio
from synccore.models import ActivityType


class UpdatedAtCursor(BasePagination):
    """Keyset pagination on (changed_at, id): stable while records change between pages."""

    page_size = 100
    max_page_size = 1000

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        size = self._page_size(request)
        records = queryset.order_by("changed_at", "pk")
        cursor = request.query_params.get("cursor")
        if cursor:
            try:
                records = crmio.after_cursor(records, cursor)
            except ValueError as exc:
                raise ValidationError({"cursor": [str(exc)]}) from exc
        page = list(records[: size + 1])
        self.next_cursor = crmio.encode_cursor(page[size - 1]) if len(page) > size else None
        return page[:size]

    def _page_size(self, request) -> int:
        raw = request.query_params.get("page_size")
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({"page_size": [f"Give a whole number from 1 to {self.max_page_size}."]})
        return size

    def get_paginated_response(self, data):
        next_url = None
        if self.next_cursor:
            next_url = replace_query_param(self.request.build_absolute_uri(), "cursor", self.next_cursor)
        return Response({"next": next_url, "next_cursor": self.next_cursor, "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["next", "next_cursor", "results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "next_cursor": {"type": "string", "nullable": True},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "page_size",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]


CRM_FILTERS = [
    OpenApiParameter("external_id", OpenApiTypes.STR),
    OpenApiParameter("updated_since", OpenApiTypes.DATETIME, description="Inclusive."),
    OpenApiParameter("include_deleted", OpenApiTypes.BOOL, description="Also tombstones (deleted: true)."),
]
# One request's items are checked, then written in one transaction; bigger batches belong in
# several requests (docs/api.md).
MAX_BULK = 1000


class CrmViewSet(EnvironmentScoped, viewsets.GenericViewSet):
    entity: str = ""
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"
    pagination_class = UpdatedAtCursor

    def get_serializer_class(self):
        return cs.SERIALIZERS[self.entity]

    def get_queryset(self):
        include_deleted = False
        if self.action == "list":
            include_deleted = self._flag("include_deleted")
        return crmio.queryset(self.environment, self.entity, include_deleted=include_deleted)

    def _flag(self, name: str) -> bool:
        raw = self.request.query_params.get(name)
        if raw is None:
            return False
        try:
            return serializers.BooleanField().run_validation(raw)
        except ValidationError as exc:
            raise ValidationError({name: exc.detail}) from exc

    def list(self, request, *args, **kwargs):
        records = self.get_queryset()
        if "external_id" in request.query_params:
            records = records.filter(external_id=request.query_params["external_id"])
        if self.entity == "activities" and "type" in request.query_params:
            records = records.filter(type=_activity_type(request.query_params["type"]))
        if "updated_since" in request.query_params:
            records = records.filter(changed_at__gte=_since(request.query_params["updated_since"]))
        page = self.paginate_queryset(records)
        return self.get_paginated_response([crmio.export(r) for r in page])

    def retrieve(self, request, *args, **kwargs):
        return Response(crmio.export(self.get_object()))

    def update(self, request, *args, **kwargs):
        """Create or update one record by its external id (the id in the path wins)."""
        data = request.data if isinstance(request.data, dict) else None
        if data is None:
            raise ValidationError({"non_field_errors": ["Send one JSON object."]})
        item = self.get_serializer(data={**data, "external_id": kwargs["external_id"]})
        item.is_valid(raise_exception=True)
        result = crmio.upsert_many(self.environment, self.entity, [item.validated_data])[0]
        if result.status == "error":
            raise ValidationError(result.errors)
        code = status.HTTP_201_CREATED if result.status == "created" else status.HTTP_200_OK
        return Response(crmio.export(result.record), status=code)

    def destroy(self, request, *args, **kwargs):
        records = crmio.ENTITIES[self.entity].objects.filter(environment=self.environment)
        if not records.filter(external_id=kwargs["external_id"]).exists():
            raise Http404
        crmio.delete(self.environment, self.entity, kwargs["external_id"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=False, methods=["post"], url_path="bulk-upsert")
    def bulk_upsert(self, request, *args, **kwargs):
        if isinstance(request.data, list) and len(request.data) > MAX_BULK:
            raise ValidationError({"non_field_errors": [f"Send at most {MAX_BULK} objects per request."]})
        if not isinstance(request.data, list):
            raise ValidationError(
                {"non_field_errors": ["Send a JSON list of objects, each with its external_id."]}
            )
        results: list[dict] = []
        valid: list[tuple[int, dict]] = []
        # One serializer checks every item, as a list serializer would: building its fields is
        # most of a serializer's cost.
        checker = self.get_serializer()
        for index, data in enumerate(request.data):
            try:
                valid.append((index, checker.run_validation(data if isinstance(data, dict) else {})))
                results.append({})
            except ValidationError as exc:
                external_id = data.get("external_id") if isinstance(data, dict) else None
                results.append(
                    {
                        "external_id": str(external_id or ""),
                        "status": "error",
                        "errors": _flatten(serializers.as_serializer_error(exc)),
                    }
                )
        done = crmio.upsert_many(self.environment, self.entity, [d for _, d in valid])
        for (index, _), result in zip(valid, done, strict=True):
            results[index] = result.as_dict()
        return Response({"results": results})


def _since(raw: str):
    try:
        moment = parse_datetime(raw)
        if moment is not None:
            return crmio.to_utc(moment)
    except ValueError:
        pass
    raise ValidationError({"updated_since": ["Give an ISO 8601 date and time, e.g. 2026-05-04T09:00:00Z."]})


def _activity_type(value: str) -> str:
    if value not in ActivityType.values:
        raise ValidationError({"type": [f"Not an activity type; one of: {', '.join(ActivityType.values)}."]})
    return value


def _flatten(errors) -> dict[str, list[str]]:
    """DRF's nested error detail as {field: [messages]} (nested lists become "field[0].name")."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "non_field_errors" and prefix:  # about the list itself (e.g. too long)
                    walk(prefix, inner)
                else:
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            for i, inner in enumerate(value):
                if inner:
                    walk(f"{prefix}[{i}]", inner)
        else:
            flat.setdefault(prefix or "non_field_errors", []).extend(
                [str(v) for v in value] if isinstance(value, list) else [str(value)]
            )

    walk("", errors)
    return flat


def crm_viewset(entity: str) -> type[CrmViewSet]:
    serializer = cs.SERIALIZERS[entity]
    tag = f"crm {entity}"
    decorated = extend_schema_view(
        list=extend_schema(parameters=CRM_FILTERS, responses=serializer(many=True)),
        retrieve=extend_schema(responses=serializer),
        update=extend_schema(
            request=serializer,
            responses={200: serializer, 201: serializer},
            description="Create or update one record by external id; 400 with field-level messages when it "
            "cannot be stored (e.g. a recurrence Exchange cannot represent).",
        ),
        destroy=extend_schema(
            responses={204: None, 409: OpenApiResponse(ErrorSerializer, description="Still referred to.")},
            description="Deletes through the model: a record still linked in mailboxes becomes a tombstone.",
        ),
        bulk_upsert=extend_schema(
            request=serializer(many=True),
            responses={200: cs.BulkUpsertResponseSerializer},
            description="Create or update by external_id (at most 1000 per request); answers per item "
            "created / updated / error.",
        ),
    )
    view = type(f"Crm{entity.title()}ViewSet", (CrmViewSet,), {"entity": entity})
    return extend_schema(tags=[tag], parameters=[ENVIRONMENT_PARAM])(decorated(view))
