"""Forms shared by the Django admin and the console."""

from __future__ import annotations

from django import forms

from synccore.models import SyncSettings
from synccore.models.config import SECRET_FIELDS


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
        for name in self.secret_fields:
            if name not in self.cleaned_data:
                continue
            if self.cleaned_data.get(f"clear_{name}"):
                self.cleaned_data[name] = ""
            elif not self.cleaned_data[name]:
                self.cleaned_data[name] = getattr(self.instance, name, "")
        super()._post_clean()


class SyncSettingsForm(WriteOnlySecretsMixin, forms.ModelForm):
    class Meta:
        model = SyncSettings
        fields = [
            f.name for f in SyncSettings._meta.fields if f.editable and f.name not in ("id", "environment")
        ]
