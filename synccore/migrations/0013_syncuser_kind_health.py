from django.db import migrations, models

# The users' health as it was (one value for all kinds) carried over to each kind it synchronizes.
_STATE = {"backing_off": "backing_off", "unhealthy": "failing", "held": "held"}


def carry_health_over(apps, schema_editor):
    SyncUser = apps.get_model("synccore", "SyncUser")
    for user in SyncUser.objects.all():
        entries = {}
        for kind, enabled, last_pass in (
            ("contacts", user.contacts_enabled, user.last_contact_pass_at),
            ("calendar", user.calendar_enabled, user.last_calendar_pass_at),
        ):
            if user.health in _STATE and enabled:
                since = user.last_error_at or user.updated_at
                entries[kind] = {"state": _STATE[user.health], "since": since.isoformat(), "reason": user.last_error}
            elif last_pass is not None:
                entries[kind] = {"state": "healthy", "since": last_pass.isoformat()}
        if entries:
            user.kind_health = entries
            user.save(update_fields=["kind_health"])


class Migration(migrations.Migration):
    dependencies = [("synccore", "0012_tasks_settings_and_directions")]

    operations = [
        migrations.AddField(
            model_name="syncuser",
            name="kind_health",
            field=models.JSONField(
                blank=True,
                default=dict,
                editable=False,
                help_text="Per kind: its state (healthy, backing_off, held, failing), since when and why.",
            ),
        ),
        migrations.RunPython(carry_health_over, migrations.RunPython.noop),
    ]
