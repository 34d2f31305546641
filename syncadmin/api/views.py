"""REST API views: take ids, call one service function (the runtime service, crmio), return.

Errors raised by the services become 400 / 404 / 409 / 422 in ``syncadmin.api.errors``.
"""

from __future__ import annotations

import re
from functools import cached_property

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from syncadmin import audit
from syncadmin.api import serializers as s
from syncadmin.api.schema import ErrorSerializer
from syncadmin.models import AuditAction, AuditEntry
from syncadmin.roles import OPERATOR
from synccore.models import Environment, FieldMapping, ItemLink, SyncRun, SyncUser
from synccore.runtime import service as runtime

ENVIRONMENT_PARAM = OpenApiParameter("environment_pk", OpenApiTypes.INT, OpenApiParameter.PATH)
ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
USER_PARAM = OpenApiParameter(
    "id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The sync user's id or its mailbox address."
)
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
    action_roles = {
        "start": OPERATOR,
        "stop": OPERATOR,
        "sync_now": OPERATOR,
        "test_connection": OPERATOR,
        "test_mailboxes": OPERATOR,
        "test_alert": OPERATOR,
    }

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

    @extend_schema(
        request=s.SyncNowSerializer,
        responses={200: s.PreviewSerializer, 202: s.StatusSerializer, 409: CONFLICT_409},
    )
    @action(detail=True, methods=["post"], url_path="sync-now")
    def sync_now(self, request, pk=None):
        body = s.SyncNowSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = body.validated_data
        if options["dry_run"]:  # a preview changes nothing: no audit entry, any synchronizer state
            preview = runtime.preview(
                self.get_object().pk,
                user_email=options["user"],
                kind=options["kind"],
                full=options["full"],
                cursor=options["cursor"],
            )
            return Response(preview)
        options.pop("cursor")
        options.pop("dry_run")
        return self._operate(
            AuditAction.SYNC_NOW,
            lambda env_id: runtime.sync_now(
                env_id, user_email=options["user"], kind=options["kind"], full=options["full"]
            ),
            changes={k: v for k, v in options.items()},
        )

    @extend_schema(
        request=None,
        responses={202: s.TestMailboxesSerializer},
        description="Test & enable (O5): every active mailbox is tested on a worker; the users' "
        "states in the status show the results.",
    )
    @action(detail=True, methods=["post"], url_path="test-mailboxes")
    def test_mailboxes(self, request, pk=None):
        environment = self.get_object()
        queued = audit.audited(
            request.user,
            AuditAction.TEST_MAILBOXES,
            environment,
            lambda: runtime.test_mailboxes(environment.pk),
            via="api",
        )
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: s.TestAlertSerializer, 409: CONFLICT_409},
        description="O6: a test alert to the environment's alert e-mail addresses and webhook, sent "
        "on a worker (409 when it has neither).",
    )
    @action(detail=True, methods=["post"], url_path="test-alert")
    def test_alert(self, request, pk=None):
        environment = self.get_object()
        channels = audit.audited(
            request.user,
            AuditAction.ALERT_SENT,
            environment,
            lambda: runtime.send_test_alert(environment.pk, request.user.get_username()),
            target="test",
            via="api",
        )
        return Response({"channels": channels}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=s.ConnectionReportSerializer)
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request, pk=None):
        report = runtime.test_connection(self.get_object().pk)
        return Response(report.as_dict())

    @extend_schema(
        request=s.SwitchBackendSerializer,
        responses={200: s.SwitchReportSerializer, 404: OpenApiResponse(ErrorSerializer)},
        description="H2/H3: move the environment (or one user) to another backend keeping every link; "
        "with dry_run (the default) only say per user how many links carry over and which items "
        "could not be found.",
    )
    @action(detail=True, methods=["post"], url_path="switch-backend")
    def switch_backend(self, request, pk=None):
        body = s.SwitchBackendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = body.validated_data
        environment = self.get_object()

        def switch(env_id: int) -> dict:
            return runtime.switch_backend(
                env_id, options["to"], user_email=options["user"], dry_run=options["dry_run"]
            )

        try:
            if options["dry_run"]:
                return Response(switch(environment.pk))
            report = audit.audited(
                request.user,
                AuditAction.SETTINGS_CHANGED,
                environment,
                lambda: switch(environment.pk),
                changes={"backend": [None, options["to"]], "user": [None, options["user"]]},
                via="api",
            )
        except LookupError as exc:
            raise NotFound(str(exc)) from exc
        return Response(report)


# --- settings ----------------------------------------------------------------------------------------


@extend_schema(tags=["settings"], parameters=[ENVIRONMENT_PARAM])
class SettingsView(EnvironmentScoped, generics.RetrieveUpdateAPIView):
    serializer_class = s.SyncSettingsSerializer

    def get_object(self):
        return self.environment.settings

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        instance = serializer.save()
        changes = audit.diff(before, audit.snapshot(instance))
        runtime.settings_saved(self.environment.pk, set(changes))
        self.audit(AuditAction.SETTINGS_CHANGED, str(instance), changes)


@extend_schema(
    tags=["items"],
    parameters=[
        ENVIRONMENT_PARAM,
        OpenApiParameter(
            "kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=["contacts", "companies", "activities", "tasks"]
        ),
        OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH),
    ],
    responses=s.ExplainSerializer,
    description="Why does this item look like this (P2): its links per mailbox and every decision "
    "the passes took about it — rule, reason, fields before → after, outcome — newest first.",
)
class ItemExplainView(EnvironmentScoped, generics.GenericAPIView):
    serializer_class = s.ExplainSerializer

    def get(self, request, environment_pk=None, kind=None, external_id=None):
        return Response(runtime.explain_item(self.environment.pk, kind, external_id))


@extend_schema(
    tags=["items"],
    parameters=[
        ENVIRONMENT_PARAM,
        OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH),
        OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH),
    ],
    request=None,
    responses=s.ExplainSerializer,
    description="P3: release an item the loop detector holds (once whatever wrote it back is fixed); "
    "a full pass of its kind decides it afresh. Answers the item's explanation; 404 when not held.",
)
class ItemReleaseView(EnvironmentScoped, generics.GenericAPIView):
    serializer_class = s.ExplainSerializer

    def post(self, request, environment_pk=None, kind=None, external_id=None):
        held = runtime.explain_item(self.environment.pk, kind, external_id)["loop_hold"]
        if held is None:
            raise NotFound("The loop detector does not hold this item.")
        audit.audited(
            request.user,
            AuditAction.ITEMS_RETRIED,
            self.environment,
            lambda: runtime.release_loop_hold(held["id"], request.user.get_username()),
            target=f"{kind} {external_id}",
            via="api",
        )
        return Response(runtime.explain_item(self.environment.pk, kind, external_id))


# --- sync users --------------------------------------------------------------------------------------


@extend_schema(tags=["users"], parameters=[ENVIRONMENT_PARAM, USER_PARAM])
@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "health",
                OpenApiTypes.STR,
                enum=list(dict.fromkeys(runtime.HEALTH_FILTERS)),
                description="A state as the status gives it; unhealthy: backing off, held or failing "
                "(the overview's count); healthy leaves never-tested and inactive users out.",
            )
        ]
    )
)
class SyncUserViewSet(EnvironmentScoped, viewsets.ModelViewSet):
    serializer_class = s.SyncUserSerializer
    lookup_value_regex = "[^/]+"  # the id, or the mailbox address (as sync-now takes it)

    def get_object(self):
        value = self.kwargs["pk"]
        users = self.get_queryset()
        if re.fullmatch(r"[0-9]{1,18}", value):  # ASCII digits that fit a bigint
            user = get_object_or_404(users, pk=int(value))
        elif "@" in value and "\x00" not in value:
            user = get_object_or_404(users, mailbox_email__iexact=value)
        else:
            raise Http404
        self.check_object_permissions(self.request, user)
        return user

    def get_queryset(self):
        users = SyncUser.objects.filter(environment=self.environment).select_related("employee")
        if self.action == "list" and "health" in self.request.query_params:
            try:
                ids = runtime.users_in_health(self.environment.pk, self.request.query_params["health"])
            except ValueError as exc:
                raise serializers.ValidationError({"health": [str(exc)]}) from exc
            users = users.filter(pk__in=ids)
        return users

    def perform_create(self, serializer):
        user = serializer.save()
        runtime.user_saved(user.pk, None)  # Test & enable: its mailbox is tested on a worker
        self.audit(AuditAction.USER_ADDED, user.mailbox_email, audit.snapshot(user))

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        user = serializer.save()
        changes = audit.diff(before, audit.snapshot(user))
        runtime.user_saved(user.pk, set(changes))
        self.audit(AuditAction.USER_CHANGED, user.mailbox_email, changes)

    def perform_destroy(self, instance):
        email = instance.mailbox_email
        runtime.delete_user(instance.pk)
        self.audit(AuditAction.USER_DELETED, email)

    @extend_schema(request=None, responses=s.SyncUserSerializer)
    @action(detail=True, methods=["post"], url_path="re-enable")
    def re_enable(self, request, environment_pk=None, pk=None):
        user = runtime.reenable(self.get_object().pk)
        self.audit(AuditAction.USER_RE_ENABLED, user.mailbox_email)
        return Response(self.get_serializer(user).data)

    @extend_schema(
        request=s.BulkUsersSerializer,
        responses=s.SyncUserSerializer(many=True),
        description="Bulk Re-enable: each listed user (its id or mailbox address) is re-enabled.",
        operation_id="environments_users_re_enable_many",
    )
    @action(detail=False, methods=["post"], url_path="re-enable")
    def re_enable_many(self, request, environment_pk=None):
        body = s.BulkUsersSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            done = runtime.reenable_users(self.environment.pk, body.validated_data["users"])
        except runtime.UnknownUser as exc:
            raise serializers.ValidationError({"users": [str(exc)]}) from exc
        for user in done:
            self.audit(AuditAction.USER_RE_ENABLED, user.mailbox_email)
        return Response(self.get_serializer(done, many=True).data)

    @extend_schema(
        request=None,
        responses={
            200: s.RemovedItemsSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The user is still active."),
            502: OpenApiResponse(ErrorSerializer, description="Exchange refused or did not answer."),
        },
        description="C7: remove the contacts this product wrote from a deactivated user's mailbox.",
    )
    @action(detail=True, methods=["post"], url_path="remove-synchronized-items")
    def remove_synchronized_items(self, request, environment_pk=None, pk=None):
        user = self.get_object()
        removed = audit.audited(
            request.user,
            AuditAction.ITEMS_REMOVED,
            self.environment,
            lambda: runtime.remove_synchronized_items(user.pk),
            target=user.mailbox_email,
            via="api",
        )
        return Response({"removed": removed})

    @extend_schema(request=None, responses=s.SyncUserSerializer)
    @action(detail=True, methods=["post"], url_path="confirm-deletions")
    def confirm_deletions(self, request, environment_pk=None, pk=None):
        user = runtime.confirm_deletions(self.get_object().pk)
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
    OpenApiParameter("kind", OpenApiTypes.STR, enum=["contacts", "calendar", "tasks", "email"]),
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
    kind = serializers.ChoiceField(["contacts", "calendar", "tasks", "email"], required=False)
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
        conflict = runtime.resolve_conflict(
            self.get_object().pk, body.validated_data["keep"], request.user.get_username()
        )
        self.audit(
            AuditAction.CONFLICT_RESOLVED, f"{conflict.field} of {conflict.link}", {"keep": conflict.choice}
        )
        return Response(self.get_serializer(conflict).data)


# --- items needing attention, and the audit log ------------------------------------------------------


UNFILED = "unfiled"
LOOP = "loop"


@extend_schema(tags=["attention"], parameters=[ENVIRONMENT_PARAM, ID_PARAM])
@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "state",
                OpenApiTypes.STR,
                enum=["failed", "skipped", "held", "not_found", "ambiguous", UNFILED, LOOP],
            )
        ],
        description="Items that failed, were skipped for bad input, or are held by the safety limit; "
        "e-mails that could not be filed (kind email, state unfiled, `message` set: dismiss them with "
        "`POST …/attention/unfiled/{unfiled_pk}/dismiss/`; their ids are not item ids); and items the "
        "loop detector holds (P3: state loop, kind the CRM record's, `loop` set: release them with "
        "`POST` to its `release`, `…/items/{kind}/{external_id}/release/`; their ids are the holds'). "
        "Newest first.",
    )
)
class AttentionViewSet(EnvironmentScoped, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.AttentionItemSerializer
    pagination_class = Pages
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        links = ItemLink.objects.filter(
            environment=self.environment, state__in=runtime.ATTENTION_LINK_STATES
        ).select_related("sync_user", "contact", "company", "activity")
        state = self.request.query_params.get("state") if self.action == "list" else None
        if state is not None:
            if state not in (*runtime.ATTENTION_LINK_STATES, UNFILED, LOOP):
                raise serializers.ValidationError(
                    {"state": ["One of failed, skipped, held, not_found, ambiguous, unfiled, loop."]}
                )
            links = links.filter(state=state)
        return links.order_by("-updated_at", "-pk")

    def list(self, request, *args, **kwargs):
        """Item links, unfiled e-mails and loop holds in one list, newest first, paged together:
        the page is chosen on (time, which, id) alone, then only its rows are read."""
        links = self.get_queryset()
        state = request.query_params.get("state")
        unfiled = runtime.unfiled_messages_query(self.environment.pk)
        holds = runtime.loop_holds_query(self.environment.pk)
        keys = [] if state in (UNFILED, LOOP) else [(at, 0, pk) for pk, at in links.values_list("pk", "updated_at")]
        if state in (None, UNFILED):
            keys += [(at, 1, pk) for pk, at in unfiled.values_list("pk", "last_seen_at")]
        if state in (None, LOOP):
            keys += [(at, 2, pk) for pk, at in holds.values_list("pk", "held_at")]
        keys.sort(reverse=True)
        page = self.paginate_queryset(keys)
        rows = {
            which: query.in_bulk([pk for _, one, pk in page if one == which])
            for which, query in enumerate((links, unfiled, holds))
        }
        serializer = {0: s.AttentionItemSerializer, 1: s.UnfiledAttentionItemSerializer, 2: s.LoopAttentionItemSerializer}
        context = self.get_serializer_context()
        data = [serializer[which](rows[which][pk], context=context).data for _, which, pk in page]
        return self.get_paginated_response(data)

    @extend_schema(parameters=[OpenApiParameter("unfiled_pk", OpenApiTypes.INT, OpenApiParameter.PATH)], request=None,
                   responses={200: s.UnfiledMessageSerializer})  # fmt: skip
    @action(detail=False, methods=["post"], url_path=r"unfiled/(?P<unfiled_pk>[0-9]+)/dismiss")
    def dismiss_unfiled(self, request, environment_pk=None, unfiled_pk=None):
        """An e-mail that could not be filed, dealt with by a person: no longer listed (until a later
        pass fails on it anew)."""
        unfiled = get_object_or_404(runtime.unfiled_messages_query(self.environment.pk), pk=unfiled_pk)
        dismissed = audit.audited(
            request.user,
            AuditAction.ITEM_DISMISSED,
            self.environment,
            lambda: runtime.dismiss_unfiled_message(unfiled.pk, request.user.get_username()),
            target=str(unfiled),
            via="api",
        )
        return Response(s.UnfiledMessageSerializer(dismissed).data)

    @extend_schema(request=None, responses={202: s.StatusSerializer, 409: CONFLICT_409})
    @action(detail=True, methods=["post"])
    def retry(self, request, environment_pk=None, pk=None):
        """Retry the item's user and kind now (a held item: confirm the deletions)."""
        link = self.get_object()
        audit.audited(
            request.user,
            AuditAction.ITEMS_RETRIED,
            self.environment,
            lambda: runtime.retry_item(link.pk),
            target=str(link),
            via="api",
        )
        return Response(runtime.status(self.environment.pk), status=status.HTTP_202_ACCEPTED)


@extend_schema(
    tags=["audit"],
    parameters=[
        OpenApiParameter("environment", OpenApiTypes.INT),
        OpenApiParameter("action", OpenApiTypes.STR, enum=list(AuditAction.values)),
        OpenApiParameter("username", OpenApiTypes.STR),
    ],
)
class AuditViewSet(viewsets.GenericViewSet, mixins.ListModelMixin):
    serializer_class = s.AuditEntrySerializer
    pagination_class = Pages

    def get_queryset(self):
        entries = AuditEntry.objects.select_related("environment")
        params = self.request.query_params
        if "environment" in params:
            # str.isdigit() takes "²" and unbounded numbers overflow the database's integer: ASCII
            # digits that fit a bigint only.
            if not re.fullmatch(r"[0-9]{1,18}", params["environment"]):
                raise serializers.ValidationError({"environment": ["An environment id."]})
            entries = entries.filter(environment_id=int(params["environment"]))
        if "action" in params:
            entries = entries.filter(action=params["action"])
        if "username" in params:
            entries = entries.filter(username=params["username"])
        return entries
