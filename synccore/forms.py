"""Forms shared by the Django admin and the console."""

from __future__ import annotations

from django import forms

from synccore.models import SyncSettings
from synccore.models.config import SECRET_FIELDS

# The settings' groups, in the order of the reference "MS Exchange Synchronization Settings"
# (plus what the reference called its "COM parameters": what to synchronize at all); the admin's
# fieldsets and the console's settings page both use them.
SETTINGS_GROUPS: list[tuple[str, list[str]]] = [
    (
        "What to synchronize",
        [
            "synchronize_contacts",
            "synchronize_activities",
            "synchronize_tasks",
            "calendar_direction",
            "tasks_direction",
        ],
    ),
    (
        "Connection",
        [
            "backend",
            "ews_url",
            "autodiscover_email",
            "auth_type",
            "access_type",
            "service_account",
            "service_password",
            "clear_service_password",
            "oauth_tenant_id",
            "oauth_client_id",
            "oauth_client_secret",
            "clear_oauth_client_secret",
            "oauth_client_secret_expires_on",
            "graph_endpoint",
            "authority_url",
            "domino_url",
            "ca_bundle",
            "allow_plain_http",
        ],
    ),
    ("Schedule and push", ["pull_interval", "pull_interval_unit", "push_enabled"]),
    (
        "Contacts",
        [
            "categorize_contacts",
            "contact_folder_name",
            "filter_by_rep",
            "filter_by_sales_group",
            "filter_by_favorites",
            "synchronize_companies",
        ],
    ),
    (
        "Calendar",
        [
            "calendar_horizon_days",
            "reminder_call_minutes",
            "reminder_appointment_minutes",
            "reminder_task_minutes",
            "conflict_policy",
            "personal_deletion_policy",
            "internal_domains",
            "comment_to_external_attendees",
        ],
    ),
    (
        "E-mail filing",
        [
            "file_emails",
            "file_emails_from",
            "email_filing_category",
            "email_filed_category",
            "track_all_emails",
            "email_body_limit",
        ],
    ),
    (
        "Safety",
        [
            "safety_limit_percent",
            "safety_limit_minimum",
            "meeting_message_limit",
            "loop_flips",
            "loop_passes",
            "batch_size",
        ],
    ),
    ("Alerts", ["alert_emails", "alert_webhook_url"]),
]


class WriteOnlySecretsMixin:
    """Secrets are never rendered back: empty keeps the stored value, “clear” removes it."""

    secret_fields: tuple[str, ...] = SECRET_FIELDS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            if name not in self.fields:
                continue
            label = self.fields[name].label
            is_set = bool(getattr(self.instance, name, ""))
            self.fields[name] = forms.CharField(
                label=label,
                required=False,
                strip=False,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                help_text=("Set. " if is_set else "Not set. ") + "Leave empty to keep it as it is.",
            )
            self.fields[f"clear_{name}"] = forms.BooleanField(
                label=f"Clear the {label.lower()}", required=False
            )

    def _post_clean(self) -> None:
        # Put the stored secret back before the model is validated and saved, unless replaced
        # or cleared, so an empty (write-only) input never wipes it.
        entered = set()
        for name in self.secret_fields:
            if name not in self.cleaned_data:
                continue
            if self.cleaned_data[name] and not self.cleaned_data.get(f"clear_{name}"):
                entered.add(name)
            if self.cleaned_data.get(f"clear_{name}"):
                self.cleaned_data[name] = ""
            elif not self.cleaned_data[name]:
                self.cleaned_data[name] = getattr(self.instance, name, "")
        # The model refuses a stored secret following a changed destination unless entered anew.
        self.instance.secrets_entered = entered
        super()._post_clean()


class SyncSettingsForm(WriteOnlySecretsMixin, forms.ModelForm):
    class Meta:
        model = SyncSettings
        fields = [
            f.name for f in SyncSettings._meta.fields if f.editable and f.name not in ("id", "environment")
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        interval = self.fields.get("pull_interval")
        if interval is not None:
            # The hint agrees with the rule (SyncSettings.clean, the API): 0 is refused.
            interval.widget.attrs["min"] = 1
            interval.help_text = "How often each mailbox is read: 1 or more, in the unit below."
