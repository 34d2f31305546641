from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from syncadmin import hooks
from syncadmin.api.fallback import not_found
from syncadmin.metrics import MetricsView

admin.site.site_header = "CRM ⇄ Exchange Synchronizer"
admin.site.site_title = "Synchronizer admin"
admin.site.index_title = "Back office"

# The API description is public (it holds no data); the docs pages load their assets from
# drf-spectacular-sidecar, so they work offline.
_public = {"permission_classes": [AllowAny], "authentication_classes": []}

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("syncadmin.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(**_public), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", **_public), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", **_public), name="api-redoc"),
    re_path(r"^api/", not_found),
    # Microsoft Graph's change notifications (push over Graph); the paths are pinned.
    path("hooks/graph/", hooks.graph_notifications, name="graph-hook"),
    path("hooks/graph/lifecycle/", hooks.graph_lifecycle, name="graph-hook-lifecycle"),
    # Prometheus' text format for monitoring systems (the path is pinned).
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("", include("syncadmin.console.urls")),
]
