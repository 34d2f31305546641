"""The Django admin: the back office for every model."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from synccore import mapping
from synccore.forms import SETTINGS_GROUPS, SyncSettingsForm
from synccore.models import (
    Activity,
    Attendee,
    Company,
    Conflict,
    Contact,
    Country,
    Employee,
    Environment,
    FieldMapping,
    FolderState,
    ItemLink,
    Language,
    SalesGroup,
    SyncRun,
    SyncSettings,
    SyncUser,
    custom,
)
from synccore.runtime import service as runtime


class TombstoneAdmin(admin.ModelAdmin):
    """Deleting a record that has items in mailboxes keeps it as a tombstone (no cascade)."""

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        linked = [obj for obj in objs if obj.has_links()]
        plain = [obj for obj in objs if obj not in linked]
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(plain, request)
        for obj in linked:
            to_delete.append(
                f"{obj} — kept as a tombstone until the synchronizer has removed it from the mailboxes"
            )
        if linked:
            label = self.model._meta.verbose_name_plural
            model_count[label] = model_count.get(label, 0) + len(linked)
        return to_delete, model_count, perms_needed, protected


class CustomFieldsAdmin(admin.ModelAdmin):
    """Records with custom fields: checked against the environment's types, new keys recorded
    (so the field mapping offers them)."""

    custom_entity = ""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        entity = self.custom_entity

        class CheckedForm(form):
            def _post_clean(self) -> None:
                super()._post_clean()
                try:
                    self.new_custom_keys = custom.check_record(self.instance, entity)
                except ValidationError as exc:
                    self._update_errors(exc)

        return CheckedForm

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        custom.CustomField.register(obj.environment_id, self.custom_entity, getattr(form, "new_custom_keys", {}))


class EnvironmentScopedAdmin(admin.ModelAdmin):
    list_filter = ["environment"]
    list_select_related = ["environment"]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "state", "state_changed_at", "description"]
    list_filter = ["state"]
    search_fields = ["name", "description"]
    readonly_fields = ["state", "state_changed_at", "state_reason", "created_at", "updated_at"]


@admin.register(SyncSettings)
class SyncSettingsAdmin(admin.ModelAdmin):
    form = SyncSettingsForm
    list_display = [
        "environment",
        "backend",
        "synchronize_contacts",
        "synchronize_activities",
        "pull_every",
        "push_enabled",
    ]
    list_filter = ["backend", "synchronize_contacts", "synchronize_activities", "push_enabled"]
    search_fields = ["environment__name", "ews_url", "service_account"]
    fieldsets = [(None, {"fields": ["environment"]})] + [
        (title, {"fields": names}) for title, names in SETTINGS_GROUPS
    ]

    readonly_fields = ["environment"]

    def has_add_permission(self, request) -> bool:
        return False  # every environment is created with its settings

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        # Let the form own the secret fields (and their “clear” boxes) instead of the model.
        kwargs["fields"] = None
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="pull interval")
    def pull_every(self, obj: SyncSettings) -> str:
        return f"{obj.pull_interval} {obj.pull_interval_unit}"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        runtime.configuration_changed(obj.environment_id)


@admin.register(SyncUser)
class SyncUserAdmin(EnvironmentScopedAdmin):
    list_display = [
        "mailbox_email",
        "environment",
        "employee",
        "contacts_enabled",
        "calendar_enabled",
        "tasks_enabled",
        "email_enabled",
        "active",
        "backend",
        "health",
        "last_contact_pass_at",
        "last_calendar_pass_at",
    ]
    list_filter = [
        "environment",
        "active",
        "backend",
        "health",
        "contacts_enabled",
        "calendar_enabled",
        "tasks_enabled",
        "email_enabled",
    ]
    search_fields = ["mailbox_email", "employee__name", "employee__email"]
    autocomplete_fields = ["employee"]
    list_select_related = ["environment", "employee"]
    readonly_fields = [
        "case_warning",
        "linked_backend",
        "health",
        "last_contact_pass_at",
        "last_calendar_pass_at",
        "last_error",
        "last_error_at",
        "backoff_until",
        "contacts_limit_confirmed",
        "calendar_limit_confirmed",
        "tasks_limit_confirmed",
    ]

    @admin.display(description="address check")
    def case_warning(self, obj: SyncUser) -> str:
        return obj.email_case_warning or "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.email_case_warning:
            messages.warning(request, obj.email_case_warning)
        moved_from = form.initial.get("environment") if "environment" in form.changed_data else None
        for environment_id in {obj.environment_id, moved_from} - {None}:
            runtime.configuration_changed(environment_id)

    def delete_model(self, request, obj):
        runtime.delete_user(obj.pk)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            runtime.delete_user(user.pk)


@admin.register(FieldMapping)
class FieldMappingAdmin(EnvironmentScopedAdmin):
    list_display = [
        "environment",
        "entity",
        "crm_field",
        "exchange_field",
        "direction",
        "fixed",
        "enabled",
        "position",
    ]
    list_filter = ["environment", "entity", "fixed", "enabled"]
    search_fields = ["crm_field", "exchange_field"]
    readonly_fields = ["fixed"]


class CrmAdmin(TombstoneAdmin, EnvironmentScopedAdmin):
    readonly_fields = ["created_at", "updated_at"]


class ExplainLinkAdmin(admin.ModelAdmin):
    """P2: "Explain" from a CRM record — its links and the decisions passes took about it."""

    explain_kind = ""

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "explain"]

    @admin.display(description="synchronization")
    def explain(self, obj) -> str:
        if not obj.pk:
            return "—"
        url = reverse("console:explain", args=[obj.environment_id, self.explain_kind, obj.external_id])
        return format_html('<a href="{}" data-action="explain">Explain: links and decisions</a>', url)


@admin.register(Country)
class CountryAdmin(CrmAdmin):
    list_display = ["name", "iso_code", "environment", "external_id"]
    search_fields = ["name", "iso_code", "external_id"]


@admin.register(Language)
class LanguageAdmin(CrmAdmin):
    list_display = ["name", "iso_code", "environment", "external_id"]
    search_fields = ["name", "iso_code", "external_id"]


@admin.register(Employee)
class EmployeeAdmin(CrmAdmin):
    list_display = ["name", "email", "username", "environment", "external_id"]
    search_fields = ["name", "email", "username", "external_id"]


@admin.register(SalesGroup)
class SalesGroupAdmin(CrmAdmin):
    list_display = ["name", "environment", "external_id"]
    search_fields = ["name", "external_id"]
    filter_horizontal = ["members"]


@admin.register(Company)
class CompanyAdmin(ExplainLinkAdmin, CustomFieldsAdmin, CrmAdmin):
    explain_kind = "companies"
    custom_entity = mapping.COMPANY
    list_display = ["name", "division", "country", "synchronize", "environment", "updated_at"]
    list_filter = ["environment", "synchronize", "country"]
    search_fields = ["name", "division", "external_id", "email"]
    autocomplete_fields = ["country"]


@admin.register(Contact)
class ContactAdmin(ExplainLinkAdmin, CustomFieldsAdmin, CrmAdmin):
    explain_kind = "contacts"
    custom_entity = mapping.CONTACT
    list_display = ["__str__", "company", "email1", "synchronize", "rep", "environment", "updated_at"]
    list_filter = ["environment", "synchronize", "country", "language", "sales_groups"]
    search_fields = ["first_name", "last_name", "email1", "email2", "email3", "external_id", "company__name"]
    autocomplete_fields = ["company", "country", "language", "rep"]
    filter_horizontal = ["sales_groups", "favorite_of"]
    list_select_related = ["environment", "company", "rep"]


class AttendeeInline(admin.TabularInline):
    model = Attendee
    extra = 0
    autocomplete_fields = ["employee", "contact"]
    fields = [
        "type",
        "employee",
        "contact",
        "email",
        "name",
        "invite",
        "meeting_organizer",
        "synchronized",
        "sent_to_synchronizer",
    ]


@admin.register(Activity)
class ActivityAdmin(ExplainLinkAdmin, CustomFieldsAdmin, CrmAdmin):
    explain_kind = "activities"
    custom_entity = mapping.ACTIVITY
    list_display = ["subject", "type", "start", "end", "all_day", "synchronize", "organizer", "environment"]
    list_filter = [
        "environment",
        "type",
        "synchronize",
        "created_by_erp",
        "all_day",
        "private",
        "is_stub",
        "status",
        "priority",
    ]
    search_fields = ["subject", "external_id", "location", "meeting_uid", "organizer_email"]
    date_hierarchy = "start"
    autocomplete_fields = ["organizer", "responsible", "contact", "company"]
    inlines = [AttendeeInline]
    readonly_fields = ["warnings", "created_at", "updated_at", "meeting_uid", "is_stub"]

    @admin.display(description="warnings")
    def warnings(self, obj: Activity) -> str:
        found = obj.warnings() if obj.pk else []
        return format_html_join("", "<p>{}</p>", ((w,) for w in found)) or "—"

    # K14: a back-office edit reaches Exchange as an API write does, through the runtime's one
    # door (which waits for the commit), not at the next pull.
    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)  # the attendees are saved by now
        runtime.notify_crm_change(form.instance.environment_id, [form.instance.pk])

    def delete_model(self, request, obj):
        environment_id, activity_id = obj.environment_id, obj.pk
        super().delete_model(request, obj)
        runtime.notify_crm_change(environment_id, [activity_id])

    def delete_queryset(self, request, queryset):
        by_environment: dict[int, list[int]] = {}
        for environment_id, activity_id in queryset.values_list("environment_id", "pk"):
            by_environment.setdefault(environment_id, []).append(activity_id)
        super().delete_queryset(request, queryset)
        for environment_id, activity_ids in by_environment.items():
            runtime.notify_crm_change(environment_id, activity_ids)


@admin.register(custom.CustomField)
class CustomFieldAdmin(EnvironmentScopedAdmin):
    """The custom field keys in use, with their types; deleting one frees its key's type."""

    list_display = ["key", "entity", "value_type", "environment", "created_at"]
    list_filter = ["environment", "entity", "value_type"]
    search_fields = ["key"]
    readonly_fields = ["environment", "entity", "key", "value_type", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """The synchronizer writes these; people only look."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ItemLink)
class ItemLinkAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "kind", "state", "sync_user", "synced_at", "error"]
    list_filter = ["environment", "kind", "state"]
    search_fields = ["sync_id", "remote_id", "sync_user__mailbox_email", "last_error"]
    list_select_related = ["sync_user", "contact", "company", "activity"]

    @admin.display(description="last error")
    def error(self, obj: ItemLink) -> str:
        return (
            format_html('<span title="{}">{}</span>', obj.last_error, obj.last_error[:80])
            if obj.last_error
            else ""
        )


@admin.register(FolderState)
class FolderStateAdmin(ReadOnlyAdmin):
    list_display = ["sync_user", "kind", "folder_name", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["sync_user__mailbox_email", "folder_name"]


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "environment",
        "sync_user",
        "kind",
        "trigger",
        "outcome",
        "created",
        "updated",
        "deleted",
        "skipped",
        "failed",
        "conflicts",
        "requests",
    ]
    list_filter = ["environment", "kind", "trigger", "outcome"]
    search_fields = ["sync_user__mailbox_email", "error"]
    date_hierarchy = "started_at"
    list_select_related = ["environment", "sync_user"]


@admin.register(Conflict)
class ConflictAdmin(ReadOnlyAdmin):
    list_display = ["detected_at", "link", "field", "choice", "resolved_at"]
    list_filter = ["choice"]
    search_fields = ["field"]
