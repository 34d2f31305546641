from django.urls import path

from syncadmin.console import views

app_name = "console"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("audit/", views.audit_log, name="audit"),
    path("environments/<int:pk>/", views.environment, name="environment"),
    path("environments/<int:pk>/start/", views.start, name="start"),
    path("environments/<int:pk>/stop/", views.stop, name="stop"),
    path("environments/<int:pk>/sync-now/", views.sync_now, name="sync-now"),
    path("environments/<int:pk>/preview/", views.preview, name="preview"),
    path("environments/<int:pk>/test-connection/", views.test_connection, name="test-connection"),
    path("environments/<int:pk>/test-alert/", views.test_alert, name="test-alert"),
    path("environments/<int:pk>/switch-backend/", views.switch_backend, name="switch-backend"),
    path("environments/<int:pk>/test-mailboxes/", views.test_mailboxes, name="test-mailboxes"),
    path("environments/<int:pk>/re-enable/", views.reenable_users, name="re-enable-users"),
    path("environments/<int:pk>/settings/", views.save_settings, name="settings"),
    path("environments/<int:pk>/settings/preview/", views.preview_settings, name="settings-preview"),
    path("environments/<int:pk>/users/add/", views.user_form, name="user-add"),
    path("environments/<int:pk>/users/<int:user_id>/edit/", views.user_form, name="user-edit"),
    path("environments/<int:pk>/users/<int:user_id>/<slug:action>/", views.user_action, name="user-action"),
    path("environments/<int:pk>/mappings/add/", views.mapping_save, name="mapping-add"),
    path("environments/<int:pk>/mappings/add/preview/", views.preview_mapping, name="mapping-add-preview"),
    path(
        "environments/<int:pk>/mappings/<int:mapping_id>/preview/", views.preview_mapping, name="mapping-preview"
    ),
    path("environments/<int:pk>/mappings/<int:mapping_id>/", views.mapping_save, name="mapping-save"),
    path(
        "environments/<int:pk>/mappings/<int:mapping_id>/delete/", views.mapping_delete, name="mapping-delete"
    ),
    path(
        "environments/<int:pk>/conflicts/<int:conflict_id>/resolve/", views.resolve_conflict, name="resolve"
    ),
    path("environments/<int:pk>/items/<int:link_id>/retry/", views.retry_item, name="retry"),
    path("environments/<int:pk>/loops/<int:hold_id>/release/", views.release_loop, name="release-loop"),
    path(
        "environments/<int:pk>/unfiled/<int:unfiled_id>/dismiss/", views.dismiss_unfiled, name="dismiss-unfiled"
    ),
    path("environments/<int:pk>/runs/<int:run_id>/", views.run_decisions, name="run"),
    path(
        "environments/<int:pk>/items/<slug:kind>/<str:external_id>/explain/",
        views.explain_item,
        name="explain",
    ),
]
