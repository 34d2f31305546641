"""GET /metrics: the Prometheus text format (O7), for any API token of a viewer and up, or for
the bearer token METRICS_TOKEN (a monitoring system's own, with no user behind it)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from syncadmin.roles import VIEWER, has_role
from synccore import metrics


def _metrics_token_given(request) -> bool:
    expected = getattr(settings, "METRICS_TOKEN", "")
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected.encode())


class MayReadMetrics(BasePermission):
    message = "Give an API token of a viewer (or more), or the metrics token as a bearer token."

    def has_permission(self, request, view) -> bool:
        return _metrics_token_given(request) or has_role(request.user, VIEWER)


class MetricsView(APIView):
    schema = None  # not part of the REST API's description: a monitoring format of its own
    permission_classes = [MayReadMetrics]

    def get(self, request):
        return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)
