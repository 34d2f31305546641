"""Console views: take ids, call one service function, render or redirect.

Every view is guarded by ``role_required``; the templates only hide what the role may not do.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from syncadmin import audit
from syncadmin.console import forms
from syncadmin.console.access import role_required
from syncadmin.console.charts import line_chart
from syncadmin.console.summary import summarize
from syncadmin.models import AuditAction, AuditEntry
from syncadmin.roles import ADMINISTRATOR, OPERATOR, VIEWER, has_role
from synccore.mailbox.base import MailboxError
from synccore.models import (
    Conflict,
    Environment,
    FieldMapping,
    ItemLink,
    LoopHold,
    SyncRun,
    SyncSettings,
    SyncUser,
    UnfiledMessage,
)
from synccore.models.config import SECRET_FIELDS
from synccore.runtime import service as runtime
from synccore.runtime.service import RuntimeServiceError


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def _rights(request: HttpRequest) -> dict[str, bool]:
    return {
        "can_operate": has_role(request.user, OPERATOR),
        "can_administer": has_role(request.user, ADMINISTRATOR),
    }


def _next_or(request: HttpRequest, default: str) -> str:
    """Where a form asked to go back to, when it is on this site; else the default."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


TABS = [
    ("users", "Users"),
    ("settings", "Settings"),
    ("filters", "Filters"),
    ("mapping", "Mapping"),
    ("history", "History"),
    ("conflicts", "Conflicts"),
    ("attention", "Attention"),
    ("audit", "Audit"),
]


TABS_KINDS = [("contacts", "contacts"), ("calendar", "calendar"), ("tasks", "tasks"), ("email", "email")]


def _environment_url(environment_id: int, tab: str = "") -> str:
    url = reverse("console:environment", args=[environment_id])
    return f"{url}?tab={tab}" if tab else url


def _tab(request: HttpRequest, default: str = "users") -> str:
    asked = request.GET.get("tab", "")
    return asked if asked in dict(TABS) else default


# The technical detail of an error, one click away (O4).
DETAILS = '<details class="detail"><summary>Details</summary><pre>{}</pre></details>'


# --- overview ----------------------------------------------------------------------------------


@role_required(VIEWER)
def overview(request: HttpRequest) -> HttpResponse:
    rows = []
    for environment in Environment.objects.all():
        status = runtime.status(environment.pk)
        rows.append({"environment": environment, "status": status, **summarize(status)})
    return render(
        request, "console/overview.html", {"rows": rows, "back_url": request.path, **_rights(request)}
    )


# --- the synchronizer: start, stop, sync now, test connection -----------------------------------


def _operate(request: HttpRequest, environment_id: int, action: str, call, done: str, changes=None):
    environment = get_object_or_404(Environment, pk=environment_id)
    try:
        audit.audited(request.user, action, environment, call, changes=changes)
    except RuntimeServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done.format(name=environment.name))
    return redirect(_next_or(request, _environment_url(environment.pk)))


@require_POST
@role_required(OPERATOR)
def start(request: HttpRequest, pk: int) -> HttpResponse:
    return _operate(
        request, pk, AuditAction.START, lambda: runtime.start(pk), "The synchronizer of {name} started."
    )


@require_POST
@role_required(OPERATOR)
def stop(request: HttpRequest, pk: int) -> HttpResponse:
    return _operate(
        request, pk, AuditAction.STOP, lambda: runtime.stop(pk), "The synchronizer of {name} stopped."
    )


@require_POST
@role_required(OPERATOR)
def sync_now(request: HttpRequest, pk: int) -> HttpResponse:
    form = forms.SyncNowForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Sync now: " + "; ".join(m for ms in form.errors.values() for m in ms))
        return redirect(_environment_url(pk, "users"))
    options = form.cleaned_data
    user = options["user"] or None
    label = "Sync all" if options["full"] else "Sync now"
    return _operate(
        request,
        pk,
        AuditAction.SYNC_NOW,
        lambda: runtime.sync_now(pk, user_email=user, kind=options["kind"], full=options["full"]),
        f"{label} queued for {user or 'every active user'} of {{name}}.",
        changes={"user": user, "kind": options["kind"], "full": options["full"]},
    )


@require_POST
@role_required(OPERATOR)
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    """P1: what "Sync now" would do, shown before anything is done (nothing is written)."""
    environment = get_object_or_404(Environment, pk=pk)
    form = forms.SyncNowForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Preview: " + "; ".join(m for ms in form.errors.values() for m in ms))
        return redirect(_environment_url(pk, "users"))
    options = form.cleaned_data
    user = options["user"] or None
    try:
        result = runtime.preview(pk, user_email=user, kind=options["kind"], full=options["full"])
    except RuntimeServiceError as exc:
        messages.error(request, str(exc))
        return redirect(_environment_url(pk, "users"))
    context = {"env": environment, "preview": result, "target": user or "every active user", "options": options}
    return render(request, "console/preview.html", context)


@require_POST
@role_required(OPERATOR)
def test_mailboxes(request: HttpRequest, pk: int) -> HttpResponse:
    """Test & enable (O5): every active mailbox is tested on a worker; the states show the result."""
    return _operate(
        request,
        pk,
        AuditAction.TEST_MAILBOXES,
        lambda: runtime.test_mailboxes(pk),
        "Every active mailbox of {name} is being tested: the users' states show the results.",
    )


@require_POST
@role_required(OPERATOR)
def test_alert(request: HttpRequest, pk: int) -> HttpResponse:
    """O6: a test alert on the environment's channels, so an administrator sees they work."""
    return _operate(
        request,
        pk,
        AuditAction.ALERT_SENT,
        lambda: runtime.send_test_alert(pk, request.user.get_username()),
        "A test alert of {name} is on its way to its alert addresses and webhook.",
        changes={"action": "test"},
    )


@require_POST
@role_required(OPERATOR)
def test_connection(request: HttpRequest, pk: int) -> HttpResponse:
    environment = get_object_or_404(Environment, pk=pk)
    report = runtime.test_connection(environment.pk)
    tried = f" Tried: {'; '.join(report.tried)}." if report.tried else ""
    if report.ok:
        messages.success(request, f"Connection OK.{tried}")
    else:
        detail = getattr(report, "detail", "")
        messages.error(
            request,
            format_html(
                "Connection failed: {}{}{}",
                report.error,
                tried,
                format_html(DETAILS, detail) if detail else "",
            ),
        )
    return redirect(_environment_url(pk, "settings"))


# --- the environment page ------------------------------------------------------------------------


@role_required(VIEWER)
def environment(request: HttpRequest, pk: int) -> HttpResponse:
    env = get_object_or_404(Environment.objects.select_related("settings"), pk=pk)
    return _render_environment(request, env)


def _render_environment(
    request,
    env: Environment,
    *,
    settings_form=None,
    filters_form=None,
    user_form=None,
    mapping_form=None,
    tab: str = "",
    status: int = 200,
) -> HttpResponse:
    status_body = runtime.status(env.pk)
    users = list(SyncUser.objects.filter(environment=env).select_related("employee"))
    by_email = {u["email"]: u for u in status_body["users"]}
    progress = runtime.running_progress(env.pk)
    user_rows = [
        {"user": user, "status": by_email.get(user.mailbox_email), "progress": progress.get(user.pk)}
        for user in users
    ]
    mappings = FieldMapping.objects.filter(environment=env)
    context = {
        "env": env,
        "back_url": _environment_url(env.pk),
        "status": status_body,
        **summarize(status_body),
        "settings_form": settings_form or forms.ConsoleSettingsForm(instance=env.settings),
        "filters_form": filters_form or forms.FiltersForm(instance=env.settings),
        "user_form": user_form or forms.SyncUserForm(environment=env),
        "user_rows": user_rows,
        "mapping_rows": [
            (row, forms.FieldMappingForm(instance=row, environment=env, prefix=f"m{row.pk}"))
            for row in mappings
        ],
        "mapping_form": mapping_form or forms.FieldMappingForm(environment=env, prefix="new"),
        "mapping_vocabulary": forms.mapping_vocabulary(env.pk),
        **_history(
            env,
            user=request.GET.get("run_user", "").strip(),
            kind=request.GET.get("run_kind", "") if request.GET.get("run_kind") in dict(TABS_KINDS) else "",
        ),
        "conflicts": Conflict.objects.filter(link__environment=env)
        .select_related("link__sync_user", "link__activity", "link__contact", "link__company")
        .order_by("resolved_at", "-detected_at")[:100],
        "attention_items": ItemLink.objects.filter(
            environment=env, state__in=runtime.ATTENTION_LINK_STATES
        )
        .select_related("sync_user", "contact", "company", "activity")
        .order_by("-updated_at")[:200],
        "attention_users": [u for u in users if u.health in runtime.ATTENTION_HEALTH],
        "attention_filings": runtime.ambiguous_filings(env.pk),
        "attention_unfiled": runtime.unfiled_messages(env.pk),
        "attention_loops": runtime.loop_holds(env.pk),
        "attention_entries": _attention_entries(status_body, users),
        "attention_secret": status_body["secret"] if status_body["secret"]["state"] in ("expiring", "expired") else None,
        "kinds": [kind.value for kind in runtime.KINDS],
        "audit_entries": AuditEntry.objects.filter(environment=env)[:20],
        "active_tab": tab or _tab(request),
        **_rights(request),
    }
    context["tabs"] = _tabs(context)
    if not context["can_administer"]:
        # Read-only for viewers and operators (the POST views refuse them as well).
        for form in (context["settings_form"], context["filters_form"]):
            for field in form.fields.values():
                field.disabled = True
    return render(request, "console/environment.html", context, status=status)


def _attention_entries(status_body: dict, users: list[SyncUser]) -> list[dict]:
    """What needs a person about users (O2): each kind held, failing or backing off, and each
    push that failed, with the action beside it."""
    by_email = {user.mailbox_email: user for user in users}
    entries = []
    for row in status_body["users"]:
        user = by_email.get(row["email"])
        if user is None or not row["active"]:
            continue
        for kind in runtime.KINDS:
            state = row["kinds"][kind.value]
            if state["state"] in runtime.NEEDS_ATTENTION:
                action = "confirm-deletions" if state["state"] == "held" else "re-enable"
                entries.append({"user": user, "kind": kind.value, **state, "action": action, "push": False})
            push = state.get("push")
            if push and push.get("state") == "failed":
                entries.append(
                    {
                        "user": user,
                        "kind": kind.value,
                        "state": "failing",
                        "since": None,
                        "reason": push.get("error", ""),
                        "detail": "",
                        "action": "",
                        "push": True,
                    }
                )
    return entries


def _tabs(context: dict) -> list[tuple[str, str, int]]:
    """(name, title, count) of each tab; the count is what waits for a person there."""
    counts = {
        "conflicts": sum(1 for c in context["conflicts"] if not c.resolved_at),
        "attention": len(context["attention_items"])
        + len(context["attention_entries"])
        + len(context["attention_filings"])
        + len(context["attention_unfiled"])
        + len(context["attention_loops"])
        + (1 if context["attention_secret"] else 0),
    }
    return [(name, title, counts.get(name, 0)) for name, title in TABS]


def _history(env: Environment, user: str = "", kind: str = "") -> dict:
    """The run history, for one user and / or one kind when asked; the charts follow the choice."""
    runs = SyncRun.objects.filter(environment=env).select_related("sync_user")
    if user:
        runs = runs.filter(sync_user__mailbox_email__iexact=user)
    if kind:
        runs = runs.filter(kind=kind)
    runs = list(runs.order_by("-started_at")[:100])
    oldest_first = list(reversed(runs))
    times = [r.started_at for r in oldest_first]
    return {
        "runs": runs[:50],
        "history_user": user,
        "history_kind": kind,
        "items_chart": line_chart(
            "Items per pass",
            times,
            {
                **{name: [getattr(r, name) for r in oldest_first] for name in ("created", "updated", "deleted", "failed")},
                # A pass that failed as a whole shows as a spike, whatever its item counts.
                "failed pass": [1 if r.outcome == "failed" else 0 for r in oldest_first],
            },
        ),
        "requests_chart": line_chart(
            "Requests per pass", times, {"requests": [r.requests for r in oldest_first]}
        ),
    }


@require_POST
@role_required(ADMINISTRATOR)
def save_settings(request: HttpRequest, pk: int) -> HttpResponse:
    env = get_object_or_404(Environment.objects.select_related("settings"), pk=pk)
    filters = request.POST.get("section") == "filters"
    form_class = forms.FiltersForm if filters else forms.ConsoleSettingsForm
    before = audit.snapshot(env.settings)
    form = form_class(request.POST, instance=env.settings)
    if not form.is_valid():
        messages.error(request, "The settings were not saved: see the messages below.")
        key = "filters_form" if filters else "settings_form"
        return _render_environment(request, env, **{key: form}, tab="filters" if filters else "settings")
    saved = form.save()
    changes = audit.diff(before, audit.snapshot(saved))
    tested = runtime.settings_saved(pk, set(changes))
    audit.record(request.user, AuditAction.SETTINGS_CHANGED, environment=env, target=str(saved), changes=changes)
    testing = f" The connection changed: {tested} mailboxes are being tested." if tested else ""
    messages.success(request, ("Filters saved." if filters else "Settings saved.") + testing)
    plain = saved.plain_http_fields() if saved.allow_plain_http else []
    if plain:
        names = ", ".join(str(saved._meta.get_field(name).verbose_name) for name in plain)
        messages.warning(
            request, f"Plain http is allowed ({names}): credentials cross the network unencrypted."
        )
    return redirect(_environment_url(pk, "filters" if filters else "settings"))


# --- a configuration change previewed before it is saved (P1) ------------------------------------


@require_POST
@role_required(ADMINISTRATOR)
def preview_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """"Preview change" beside "Save" of the filters and the settings: nothing is saved."""
    env = get_object_or_404(Environment.objects.select_related("settings"), pk=pk)
    filters = request.POST.get("section") == "filters"
    form_class = forms.FiltersForm if filters else forms.ConsoleSettingsForm
    tab = "filters" if filters else "settings"

    def build():
        return form_class(request.POST, instance=SyncSettings.objects.get(pk=env.settings.pk))

    form = build()
    if not filters and any(request.POST.get(name) or request.POST.get(f"clear_{name}") for name in SECRET_FIELDS):
        # A secret would have to travel back in the page to be saved after the preview.
        messages.error(request, "A preview does not carry passwords or secrets: save the connection on its own.")
        return _render_environment(request, env, settings_form=form, tab=tab)
    if not form.is_valid():
        messages.error(request, "Nothing to preview: see the messages below.")
        return _render_environment(request, env, **{f"{tab}_form": form}, tab=tab)
    what = "these filters" if filters else "these settings"
    return _preview_change(request, env, lambda: build().save(), reverse("console:settings", args=[pk]), tab, what)


@require_POST
@role_required(ADMINISTRATOR)
def preview_mapping(request: HttpRequest, pk: int, mapping_id: int | None = None) -> HttpResponse:
    """"Preview change" beside "Save" of a field mapping row (or "Add"): nothing is saved."""
    env = get_object_or_404(Environment, pk=pk)
    if mapping_id:
        get_object_or_404(FieldMapping, pk=mapping_id, environment=env)

    def build():
        row = FieldMapping.objects.get(pk=mapping_id) if mapping_id else None
        prefix = f"m{mapping_id}" if mapping_id else "new"
        return forms.FieldMappingForm(request.POST, instance=row, environment=env, prefix=prefix)

    form = build()
    if not form.is_valid():
        errors = "; ".join(m for ms in form.errors.values() for m in ms)
        messages.error(request, f"Nothing to preview: {errors}")
        return _render_environment(request, env, mapping_form=None if mapping_id else form, tab="mapping")
    save_url = (
        reverse("console:mapping-save", args=[pk, mapping_id]) if mapping_id else reverse("console:mapping-add", args=[pk])
    )
    return _preview_change(request, env, lambda: build().save(), save_url, "mapping", "this mapping")


def _preview_change(request: HttpRequest, env: Environment, proposed, save_url: str, tab: str, what: str):
    """What every active user's next pass would do once the posted form is saved; "Save this
    change" posts the very same fields to the form's own save."""
    result = runtime.preview_change(env.pk, proposed)
    replay = [
        (name, value) for name, values in request.POST.lists() if name != "csrfmiddlewaretoken" for value in values
    ]
    context = {
        "env": env,
        "preview": result,
        "what": what,
        "replay": replay,
        "save_url": save_url,
        "back_url": _environment_url(env.pk, tab),
    }
    return render(request, "console/preview_change.html", context)


# --- sync users -----------------------------------------------------------------------------------


@role_required(ADMINISTRATOR)
def user_form(request: HttpRequest, pk: int, user_id: int | None = None) -> HttpResponse:
    env = get_object_or_404(Environment, pk=pk)
    user = get_object_or_404(SyncUser, pk=user_id, environment=env) if user_id else None
    before = audit.snapshot(user) if user else {}
    form = forms.SyncUserForm(request.POST or None, instance=user, environment=env)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        changes = audit.diff(before, audit.snapshot(saved))
        tested = runtime.user_saved(saved.pk, set(changes) if user else None)
        action = AuditAction.USER_CHANGED if user else AuditAction.USER_ADDED
        audit.record(request.user, action, environment=env, target=saved.mailbox_email, changes=changes)
        testing = " Its mailbox is being tested: the result shows as its state." if tested else ""
        messages.success(request, f"Sync user {saved.mailbox_email} saved.{testing}")
        return redirect(_environment_url(pk, "users"))
    return render(request, "console/user_form.html", {"env": env, "form": form, "sync_user": user})


USER_ACTIONS = {
    "deactivate": (AuditAction.USER_CHANGED, "deactivated"),
    "activate": (AuditAction.USER_CHANGED, "activated"),
    "re-enable": (AuditAction.USER_RE_ENABLED, "re-enabled"),
    "confirm-deletions": (AuditAction.DELETIONS_CONFIRMED, "allowed to delete beyond the safety limit"),
    "remove-synchronized-items": (AuditAction.ITEMS_REMOVED, "cleaned of the synchronized contacts"),
}


@require_POST
@role_required(ADMINISTRATOR)
def user_action(request: HttpRequest, pk: int, user_id: int, action: str) -> HttpResponse:
    user = get_object_or_404(SyncUser, pk=user_id, environment_id=pk)
    if action not in USER_ACTIONS:
        return HttpResponse(status=404)
    audit_action, done = USER_ACTIONS[action]
    calls = {
        "deactivate": lambda: runtime.set_active(user.pk, False),
        "activate": lambda: runtime.set_active(user.pk, True),
        "re-enable": lambda: runtime.reenable(user.pk),
        "confirm-deletions": lambda: runtime.confirm_deletions(user.pk),
        "remove-synchronized-items": lambda: runtime.remove_synchronized_items(user.pk),
    }
    try:
        audit.audited(
            request.user,
            audit_action,
            user.environment,
            calls[action],
            target=user.mailbox_email,
            changes={"action": action},
        )
    except (RuntimeServiceError, MailboxError) as exc:
        messages.error(request, f"{user.mailbox_email}: {exc}")
    else:
        messages.success(request, f"{user.mailbox_email} {done}.")
    return redirect(_next_or(request, _environment_url(pk, "users")))


@require_POST
@role_required(ADMINISTRATOR)
def reenable_users(request: HttpRequest, pk: int) -> HttpResponse:
    """Bulk Re-enable (O5) of the users ticked in the users table."""
    env = get_object_or_404(Environment, pk=pk)
    chosen = request.POST.getlist("users")
    if not chosen:
        messages.error(request, "Tick the users to re-enable first.")
        return redirect(_environment_url(pk, "users"))
    try:
        done = runtime.reenable_users(env.pk, chosen)
    except RuntimeServiceError as exc:
        messages.error(request, str(exc))
    else:
        for user in done:
            audit.record(request.user, AuditAction.USER_RE_ENABLED, environment=env, target=user.mailbox_email)
        messages.success(request, f"Re-enabled: {', '.join(u.mailbox_email for u in done)}.")
    return redirect(_environment_url(pk, "users"))


# --- field mappings -------------------------------------------------------------------------------


@require_POST
@role_required(ADMINISTRATOR)
def mapping_save(request: HttpRequest, pk: int, mapping_id: int | None = None) -> HttpResponse:
    env = get_object_or_404(Environment, pk=pk)
    row = get_object_or_404(FieldMapping, pk=mapping_id, environment=env) if mapping_id else None
    before = audit.snapshot(row) if row else {}
    form = forms.FieldMappingForm(
        request.POST, instance=row, environment=env, prefix=f"m{row.pk}" if row else "new"
    )
    if not form.is_valid():
        errors = "; ".join(m for ms in form.errors.values() for m in ms)
        messages.error(request, f"The mapping was not saved: {errors}")
        return _render_environment(request, env, mapping_form=None if row else form, tab="mapping")
    saved = form.save()
    audit.record(
        request.user,
        AuditAction.MAPPING_CHANGED,
        environment=env,
        target=str(saved),
        changes=audit.diff(before, audit.snapshot(saved)),
    )
    messages.success(request, f"Mapping saved: {saved}.")
    return redirect(_environment_url(pk, "mapping"))


@require_POST
@role_required(ADMINISTRATOR)
def mapping_delete(request: HttpRequest, pk: int, mapping_id: int) -> HttpResponse:
    row = get_object_or_404(FieldMapping, pk=mapping_id, environment_id=pk)
    if row.fixed:
        messages.error(request, "This row is fixed: the synchronizer depends on it.")
    else:
        audit.record(
            request.user,
            AuditAction.MAPPING_CHANGED,
            environment=row.environment,
            target=str(row),
            changes={"removed": audit.snapshot(row)},
        )
        row.delete()
        messages.success(request, f"Mapping removed: {row}.")
    return redirect(_environment_url(pk, "mapping"))


# --- conflicts and items needing attention -----------------------------------------------------------


@require_POST
@role_required(ADMINISTRATOR)
def resolve_conflict(request: HttpRequest, pk: int, conflict_id: int) -> HttpResponse:
    conflict = get_object_or_404(Conflict, pk=conflict_id, link__environment_id=pk)
    form = forms.ResolveForm(request.POST)
    if form.is_valid():
        resolved = runtime.resolve_conflict(
            conflict.pk, form.cleaned_data["keep"], request.user.get_username()
        )
        audit.record(
            request.user,
            AuditAction.CONFLICT_RESOLVED,
            environment=conflict.link.environment,
            target=f"{resolved.field} of {resolved.link}",
            changes={"keep": resolved.choice},
        )
        messages.success(request, f"Conflict on {resolved.field} resolved: {resolved.get_choice_display()}.")
    return redirect(_environment_url(pk, "conflicts"))


@require_POST
@role_required(ADMINISTRATOR)
def retry_item(request: HttpRequest, pk: int, link_id: int) -> HttpResponse:
    link = get_object_or_404(ItemLink, pk=link_id, environment_id=pk)
    try:
        audit.audited(
            request.user,
            AuditAction.ITEMS_RETRIED,
            link.environment,
            lambda: runtime.retry_item(link.pk),
            target=str(link),
        )
    except RuntimeServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Retry queued for {link}.")
    return redirect(_environment_url(pk, "attention"))


@require_POST
@role_required(ADMINISTRATOR)
def release_loop(request: HttpRequest, pk: int, hold_id: int) -> HttpResponse:
    """P3: release an item the loop detector held, once whatever wrote it back is fixed."""
    hold = get_object_or_404(LoopHold, pk=hold_id, environment_id=pk)
    released = audit.audited(
        request.user,
        AuditAction.ITEMS_RETRIED,
        hold.environment,
        lambda: runtime.release_loop_hold(hold.pk, request.user.get_username()),
        target=str(hold),
    )
    messages.success(request, f"Released: {released.subject or released.entity} is synchronized again.")
    return redirect(_environment_url(pk, "attention"))


@require_POST
@role_required(ADMINISTRATOR)
def dismiss_unfiled(request: HttpRequest, pk: int, unfiled_id: int) -> HttpResponse:
    """A message that could not be filed, dealt with by a person: no longer listed."""
    unfiled = get_object_or_404(UnfiledMessage, pk=unfiled_id, environment_id=pk)
    audit.audited(
        request.user,
        AuditAction.ITEM_DISMISSED,
        unfiled.environment,
        lambda: runtime.dismiss_unfiled_message(unfiled.pk, request.user.get_username()),
        target=str(unfiled),
    )
    messages.success(request, f"Dismissed: “{unfiled.subject}” is no longer listed.")
    return redirect(_environment_url(pk, "attention"))


@role_required(VIEWER)
def run_decisions(request: HttpRequest, pk: int, run_id: int) -> HttpResponse:
    """P2: what one pass of the run history decided, each item with its Explain."""
    environment = get_object_or_404(Environment, pk=pk)
    try:
        run = runtime.run_decisions(pk, run_id)
    except ObjectDoesNotExist as exc:
        raise Http404("No such run.") from exc
    return render(request, "console/run.html", {"env": environment, "run": run})


@role_required(VIEWER)
def explain_item(request: HttpRequest, pk: int, kind: str, external_id: str) -> HttpResponse:
    """P2: "why does this item look like this?" — its links and its decisions, newest first."""
    environment = get_object_or_404(Environment, pk=pk)
    try:
        history = runtime.explain_item(pk, kind, external_id)
    except ObjectDoesNotExist as exc:
        raise Http404(str(exc)) from exc
    return render(request, "console/explain.html", {"env": environment, "item": history})


# --- audit log -----------------------------------------------------------------------------------------


@role_required(VIEWER)
def audit_log(request: HttpRequest) -> HttpResponse:
    entries = AuditEntry.objects.select_related("environment")
    query = request.GET.get("q", "").strip()
    if query:
        entries = entries.filter(
            Q(username__icontains=query) | Q(target__icontains=query) | Q(action__icontains=query)
        )
    return render(request, "console/audit.html", {"entries": entries[:500], "q": query})


# --- moving mailboxes to another backend (H2, H3) -------------------------------------------------


@require_POST
@role_required(ADMINISTRATOR)
def switch_backend(request: HttpRequest, pk: int) -> HttpResponse:
    """The preview of a move first (nothing changes); the move once the administrator confirms it."""
    env = get_object_or_404(Environment.objects.select_related("settings"), pk=pk)
    form = forms.SwitchBackendForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Move: " + "; ".join(m for ms in form.errors.values() for m in ms))
        return redirect(_environment_url(pk, "settings"))
    to, user = form.cleaned_data["to"], form.cleaned_data["user"] or None
    label = dict(forms.SwitchBackendForm.base_fields["to"].choices)[to]
    try:
        if not form.cleaned_data["confirm"]:
            report = runtime.switch_backend(pk, to, user_email=user, dry_run=True)
            context = {"env": env, "report": report, "to": to, "to_label": label, "user": user or ""}
            return render(request, "console/switch_backend.html", context)
        report = audit.audited(
            request.user,
            AuditAction.SETTINGS_CHANGED,
            env,
            lambda: runtime.switch_backend(pk, to, user_email=user, dry_run=False),
            target=user or "",
            changes={"backend": [None, to]},
        )
    except LookupError as exc:
        messages.error(request, str(exc))
        return redirect(_environment_url(pk, "settings"))
    messages.success(
        request,
        f"{user or 'Every mailbox of ' + env.name} moves to {label}: {report['found']} of {report['links']} "
        f"links carry over at the next pass, {report['not_found']} not found.",
    )
    return redirect(_environment_url(pk, "settings"))
