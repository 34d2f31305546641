"""/api/v1/ — the pinned REST interface."""

from __future__ import annotations

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from syncadmin.api import crm, views

ENV = r"environments/(?P<environment_pk>[0-9]+)"

router = SimpleRouter()
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register(f"{ENV}/users", views.SyncUserViewSet, basename="sync-user")
router.register(f"{ENV}/field-mappings", views.FieldMappingViewSet, basename="field-mapping")
router.register(f"{ENV}/runs", views.SyncRunViewSet, basename="run")
router.register(f"{ENV}/conflicts", views.ConflictViewSet, basename="conflict")
router.register(f"{ENV}/attention", views.AttentionViewSet, basename="attention")
router.register("audit", views.AuditViewSet, basename="audit")
for entity in ("companies", "contacts", "employees", "activities"):
    router.register(f"{ENV}/crm/{entity}", crm.crm_viewset(entity), basename=f"crm-{entity}")

urlpatterns = [
    re_path(rf"^{ENV}/settings/$", views.SettingsView.as_view(), name="settings"),
    re_path(
        rf"^{ENV}/items/(?P<kind>[a-z]+)/(?P<external_id>[^/]+)/explain/$",
        views.ItemExplainView.as_view(),
        name="item-explain",
    ),
    re_path(
        rf"^{ENV}/items/(?P<kind>[a-z]+)/(?P<external_id>[^/]+)/release/$",
        views.ItemReleaseView.as_view(),
        name="item-release",
    ),
    *router.urls,
]
