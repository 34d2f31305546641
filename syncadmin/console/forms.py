"""Console forms. The settings form reuses synccore's write-only-secrets form."""

from __future__ import annotations

from django import forms

from synccore import mapping
from synccore.forms import SETTINGS_GROUPS, SyncSettingsForm
from synccore.models import AuthType, Backend, CustomField, Employee, FieldMapping, SyncSettings, SyncUser

FILTER_FIELDS = ["filter_by_rep", "filter_by_sales_group", "filter_by_favorites", "synchronize_companies"]


# Which connection fields apply to which choice of backend and authentication: the form shows
# only those (the console's script follows a change of the choice at once).
SHOWN_WHEN = {
    "ews_url": "ews",
    "autodiscover_email": "ews",
    "auth_type": "ews",
    "access_type": "ews",
    "service_account": "ews-password",
    "service_password": "ews-password",
    "clear_service_password": "ews-password",
    "oauth_tenant_id": "oauth",
    "oauth_client_id": "oauth",
    "oauth_client_secret": "oauth",
    "clear_oauth_client_secret": "oauth",
    "oauth_client_secret_expires_on": "oauth",
    "graph_endpoint": "graph",
    "authority_url": "graph",
    "domino_url": "domino",
    "ca_bundle": "tls",
}


def applies(condition: str, backend: str, auth_type: str, users_backends: frozenset[str] = frozenset()) -> bool:
    """Whether fields shown under ``condition`` matter for this backend and authentication, or
    for the backend a sync user of the environment has of its own (H1: a hybrid environment
    holds the EWS and the Graph connection side by side)."""
    graph = backend == Backend.GRAPH or Backend.GRAPH in users_backends
    ews = backend not in (Backend.GRAPH, Backend.DOMINO) or Backend.EWS in users_backends
    domino = backend == Backend.DOMINO or Backend.DOMINO in users_backends
    return {
        "": True,
        "ews": ews,
        "ews-password": (ews and auth_type in (AuthType.NTLM, AuthType.BASIC)) or domino,
        "domino": domino,
        "oauth": graph or (ews and auth_type == AuthType.OAUTH2),
        "graph": graph,
        "tls": graph or domino,
    }[condition]


class ConsoleSettingsForm(SyncSettingsForm):
    class Meta(SyncSettingsForm.Meta):
        fields = [name for name in SyncSettingsForm.Meta.fields if name not in FILTER_FIELDS]

    def _current(self, name: str) -> str:
        if self.is_bound:
            return self.data.get(self.add_prefix(name), "")
        return getattr(self.instance, name)

    def users_backends(self) -> frozenset[str]:
        """The backends sync users of this environment have of their own (H1)."""
        if not self.instance.pk:
            return frozenset()
        users = SyncUser.objects.filter(environment_id=self.instance.environment_id).exclude(backend="")
        return frozenset(users.values_list("backend", flat=True))

    def groups(self):
        """(title, [(bound field, condition, shown)]) in display order."""
        backend, auth_type = self._current("backend"), self._current("auth_type")
        others = self.users_backends()
        groups = []
        for title, names in SETTINGS_GROUPS:
            rows = []
            for name in names:
                if name not in self.fields:
                    continue
                condition = SHOWN_WHEN.get(name, "")
                rows.append((self[name], condition, applies(condition, backend, auth_type, others)))
            if rows:
                groups.append((title, rows))
        return groups


class FiltersForm(forms.ModelForm):
    class Meta:
        model = SyncSettings
        fields = FILTER_FIELDS


class OverrideSelect(forms.NullBooleanSelect):
    """Empty follows the environment's setting."""

    def __init__(self, attrs=None) -> None:
        super().__init__(attrs)
        self.choices = [("unknown", "As the environment"), ("true", "On"), ("false", "Off")]


class SyncUserForm(forms.ModelForm):
    class Meta:
        model = SyncUser
        fields = [
            "employee",
            "mailbox_email",
            "contacts_enabled",
            "calendar_enabled",
            "tasks_enabled",
            "email_enabled",
            "contact_folder_override",
            "categorize_override",
            "active",
            "backend",
        ]
        widgets = {"categorize_override": OverrideSelect}

    def __init__(self, *args, environment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.environment = environment
        # The environment's page holds the settings form too, whose backend is id_backend.
        self.fields["backend"].widget.attrs["id"] = "id_user_backend"
        self.fields["backend"].choices = [("", f"The environment's ({environment.settings.get_backend_display()})")] + [
            c for c in self.fields["backend"].choices if c[0]
        ]
        self.fields["employee"].queryset = Employee.objects.filter(environment=environment).exclude(email="")
        self.fields["employee"].help_text = "The mailbox e-mail must be this employee's address (any case)."


class FieldMappingForm(forms.ModelForm):
    """An editable row: a choice of the entity's CRM and Exchange fields."""

    class Meta:
        model = FieldMapping
        fields = ["entity", "crm_field", "exchange_field", "direction", "enabled"]

    def __init__(self, *args, environment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.environment = environment
        entity = self.data.get(self.add_prefix("entity")) or self.instance.entity or mapping.CONTACT
        keys = CustomField.keys(environment.pk, entity)
        self.fields["crm_field"] = forms.ChoiceField(
            label="CRM field", choices=_sorted(mapping.crm_fields(entity, keys))
        )
        self.fields["exchange_field"] = forms.ChoiceField(
            label="Exchange field", choices=_sorted(mapping.exchange_fields(entity, keys))
        )
        self.fields["direction"].choices = mapping.direction_choices(entity)
        if self.instance.pk:
            self.fields["entity"].disabled = True

    def _get_validation_exclusions(self):
        # The environment is set on the instance, not a form field: without it the rule "one
        # source per Exchange field" would go unchecked and the save would fail in the database.
        exclusions = super()._get_validation_exclusions()
        exclusions.discard("environment")
        return exclusions


def mapping_vocabulary(environment_id: int | None = None) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Per entity, the CRM and Exchange field choices (the editor swaps them with the entity),
    with the environment's custom fields."""
    vocabulary = {}
    for entity, _ in mapping.ENTITY_CHOICES:
        keys = CustomField.keys(environment_id, entity)
        vocabulary[entity] = {
            "crm": _sorted(mapping.crm_fields(entity, keys)),
            "exchange": _sorted(mapping.exchange_fields(entity, keys)),
            "direction": mapping.direction_choices(entity),
        }
    return vocabulary


def _sorted(fields: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(fields.items(), key=lambda item: item[1])


class SyncNowForm(forms.Form):
    user = forms.EmailField(required=False)
    kind = forms.ChoiceField(
        choices=[("all", "all"), ("contacts", "contacts"), ("calendar", "calendar"), ("tasks", "tasks"), ("email", "email")], initial="all"
    )
    full = forms.BooleanField(required=False)


class ResolveForm(forms.Form):
    keep = forms.ChoiceField(choices=[("crm", "CRM"), ("exchange", "Exchange")])


class SwitchBackendForm(forms.Form):
    """Move the environment (or one mailbox) to another backend: a preview, then the move (H3)."""

    to = forms.ChoiceField(choices=Backend.choices)
    user = forms.EmailField(required=False, help_text="Empty: every mailbox of the environment.")
    confirm = forms.BooleanField(required=False)
