"""REST API views: take ids, call one service function (runtime, operations, crmio), return.

Errors raised by the services become 400 / 404 / 409 / 422 in ``syncadmin.api.errors``.
"""

from __future__ import annotations

from functools import cached_property

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from syncadmin import audit
from syncadmin.api import serializers as s
from syncadmin.api.schema import ErrorSerializer
from syncadmin.models import AuditAction
from syncadmin.roles import OPERATOR
from synccore import operations, runtime
from synccore.models import Environment, FieldMapping, SyncRun, SyncUser

ENVIRONMENT_PARAM = OpenApiParameter("environment_pk", OpenApiTypes.INT, OpenApiParameter.PATH)
ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
CONFLICT_409 = OpenApiResponse(
    ErrorSerializer, description="Illegal transition (e.g. stopping a stopped one)."
)
START_FAILED_422 = OpenApiResponse(
    ErrorSerializer, description="The start failed: the environment is now “failed” with this reason."
)


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class EnvironmentScoped:
    """Views under /environments/{environment_pk}/: the environment, 404 when unknown."""

    @cached_property
    def environment(self) -> Environment:
        return get_object_or_404(Environment, pk=self.kwargs["environment_pk"])

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if "environment_pk" in self.kwargs:
            context["environment"] = self.environment
        return context

    def audit(self, action: str, target: str = "", changes=None) -> None:
        audit.record(
            self.request.user, action, environment=self.environment, target=target, changes=changes, via="api"
        )


# --- environments and the synchronizer -------------------------------------------------------------


@extend_schema(tags=["environments"])
class EnvironmentViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Environment.objects.all()
    serializer_class = s.EnvironmentSerializer
    lookup_value_regex = "[0-9]+"
    action_roles = {"start": OPERATOR, "stop": OPERATOR, "sync_now": OPERATOR, "test_connection": OPERATOR}

    def _operate(self, action: str, call, changes=None) -> Response:
        environment = self.get_object()
        body = audit.audited(
            self.request.user, action, environment, lambda: call(environment.pk), changes=changes, via="api"
        )
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=s.StatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        return Response(runtime.status(self.get_object().pk))

    @extend_schema(
        request=None, responses={202: s.StatusSerializer, 409: CONFLICT_409, 422: START_FAILED_422}
    )
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._operate(AuditAction.START, runtime.start)

    @extend_schema(request=None, responses={202: s.StatusSerializer, 409: CONFLICT_409})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._operate(AuditAction.STOP, runtime.stop)

    @extend_schema(request=s.SyncNowSerializer, responses={202: s.StatusSerializer, 409: CONFLICT_409})
    @action(detail=True, methods=["post"], url_path="sync-now")
    def sync_now(self, request, pk=None):
        body = s.SyncNowSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = body.validated_data
        return self._operate(
            AuditAction.SYNC_NOW,
            lambda env_id: runtime.sync_now(
                env_id, user_email=options["user"], kind=options["kind"], full=options["full"]
            ),
            changes={k: v for k, v in options.items()},
        )

    @extend_schema(request=None, responses=s.ConnectionReportSerializer)
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request, pk=None):
        report = runtime.test_connection(self.get_object().pk)
        return Response(report.as_dict())


# --- settings ----------------------------------------------------------------------------------------


@extend_schema(tags=["settings"], parameters=[ENVIRONMENT_PARAM])
class SettingsView(EnvironmentScoped, generics.RetrieveUpdateAPIView):
    serializer_class = s.SyncSettingsSerializer

    def get_object(self):
        return self.environment.settings

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        instance = serializer.save()
        self.audit(AuditAction.SETTINGS_CHANGED, str(instance), audit.diff(before, audit.snapshot(instance)))


# --- sync users --------------------------------------------------------------------------------------


@extend_schema(tags=["users"], parameters=[ENVIRONMENT_PARAM, ID_PARAM])
class SyncUserViewSet(EnvironmentScoped, viewsets.ModelViewSet):
    serializer_class = s.SyncUserSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return SyncUser.objects.filter(environment=self.environment).select_related("employee")

    def perform_create(self, serializer):
        user = serializer.save()
        self.audit(AuditAction.USER_ADDED, user.mailbox_email, audit.snapshot(user))

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        user = serializer.save()
        self.audit(AuditAction.USER_CHANGED, user.mailbox_email, audit.diff(before, audit.snapshot(user)))

    def perform_destroy(self, instance):
        email = instance.mailbox_email
        instance.delete()
        self.audit(AuditAction.USER_DELETED, email)

    @extend_schema(request=None, responses=s.SyncUserSerializer)
    @action(detail=True, methods=["post"], url_path="re-enable")
    def re_enable(self, request, environment_pk=None, pk=None):
        user = operations.re_enable_user(self.get_object().pk)
        self.audit(AuditAction.USER_RE_ENABLED, user.mailbox_email)
        return Response(self.get_serializer(user).data)

    @extend_schema(request=None, responses=s.SyncUserSerializer)
    @action(detail=True, methods=["post"], url_path="confirm-deletions")
    def confirm_deletions(self, request, environment_pk=None, pk=None):
        user = operations.confirm_deletions(self.get_object().pk)
        self.audit(AuditAction.DELETIONS_CONFIRMED, user.mailbox_email)
        return Response(self.get_serializer(user).data)


# --- field mappings ----------------------------------------------------------------------------------


@extend_schema(tags=["field mappings"], parameters=[ENVIRONMENT_PARAM, ID_PARAM])
@extend_schema_view(destroy=extend_schema(responses={204: None, 409: CONFLICT_409}))
class FieldMappingViewSet(EnvironmentScoped, viewsets.ModelViewSet):
    serializer_class = s.FieldMappingSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return FieldMapping.objects.filter(environment=self.environment)

    def perform_create(self, serializer):
        row = serializer.save()
        self.audit(AuditAction.MAPPING_CHANGED, str(row), {"added": audit.snapshot(row)})

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        row = serializer.save()
        self.audit(AuditAction.MAPPING_CHANGED, str(row), audit.diff(before, audit.snapshot(row)))

    def destroy(self, request, *args, **kwargs):
        row = self.get_object()
        if row.fixed:
            return Response(
                {"detail": "This row is fixed: the synchronizer depends on it."},
                status=status.HTTP_409_CONFLICT,
            )
        self.audit(AuditAction.MAPPING_CHANGED, str(row), {"removed": audit.snapshot(row)})
        row.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- runs and conflicts ------------------------------------------------------------------------------

RUN_FILTERS = [
    OpenApiParameter("user", OpenApiTypes.STR, description="A sync user's mailbox e-mail."),
    OpenApiParameter("kind", OpenApiTypes.STR, enum=["contacts", "calendar"]),
    OpenApiParameter(
        "outcome", OpenApiTypes.STR, enum=["running", "success", "partial", "held", "failed", "aborted"]
    ),
    OpenApiParameter(
        "trigger", OpenApiTypes.STR, enum=["schedule", "start", "push", "manual", "full", "command"]
    ),
    OpenApiParameter("started_after", OpenApiTypes.DATETIME),
    OpenApiParameter("started_before", OpenApiTypes.DATETIME),
]


class RunFilters(serializers.Serializer):
    user = serializers.CharField(required=False)
    kind = serializers.ChoiceField(["contacts", "calendar"], required=False)
    outcome = serializers.ChoiceField(
        ["running", "success", "partial", "held", "failed", "aborted"], required=False
    )
    trigger = serializers.ChoiceField(
        ["schedule", "start", "push", "manual", "full", "command"], required=False
    )
    started_after = serializers.DateTimeField(required=False)
    started_before = serializers.DateTimeField(required=False)


@extend_schema(tags=["runs"], parameters=[ENVIRONMENT_PARAM, ID_PARAM])
@extend_schema_view(list=extend_schema(parameters=RUN_FILTERS))
class SyncRunViewSet(EnvironmentScoped, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.SyncRunSerializer
    pagination_class = Pages
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        runs = SyncRun.objects.filter(environment=self.environment).select_related("sync_user")
        if self.action != "list":
            return runs
        filters = RunFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        given = filters.validated_data
        if "user" in given:
            runs = runs.filter(sync_user__mailbox_email__iexact=given["user"])
        for name in ("kind", "outcome", "trigger"):
            if name in given:
                runs = runs.filter(**{name: given[name]})
        if "started_after" in given:
            runs = runs.filter(started_at__gte=given["started_after"])
        if "started_before" in given:
            runs = runs.filter(started_at__lt=given["started_before"])
        return runs.order_by("-started_at", "-pk")


@extend_schema(tags=["conflicts"], parameters=[ENVIRONMENT_PARAM, ID_PARAM])
@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("resolved", OpenApiTypes.BOOL, description="Only (un)resolved conflicts.")
        ]
    )
)
class ConflictViewSet(EnvironmentScoped, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.ConflictSerializer
    pagination_class = Pages
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        conflicts = s.conflicts_of(self.environment)
        if self.action == "list" and "resolved" in self.request.query_params:
            try:
                flag = serializers.BooleanField().run_validation(self.request.query_params["resolved"])
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"resolved": exc.detail}) from exc
            conflicts = s.unresolved(conflicts, flag)
        return conflicts.order_by("-detected_at", "-pk")

    @extend_schema(request=s.ResolveConflictSerializer, responses=s.ConflictSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, environment_pk=None, pk=None):
        body = s.ResolveConflictSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        conflict = operations.resolve_conflict(
            self.get_object().pk, body.validated_data["keep"], request.user.get_username()
        )
        self.audit(
            AuditAction.CONFLICT_RESOLVED, f"{conflict.field} of {conflict.link}", {"keep": conflict.choice}
        )
        return Response(self.get_serializer(conflict).data)
