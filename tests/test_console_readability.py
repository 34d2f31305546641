"""Console: what it shows reads as words, and renders without emoji fonts (issue 14, finding 11)."""

from __future__ import annotations

import pytest

from syncadmin import audit
from syncadmin.models import AuditAction
from synccore.models import FieldMapping
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(user_with_role("administrator"))
    return client


def test_audit_changes_read_field_old_to_new_without_python_reprs(admin_client, env):
    audit.record(
        None, AuditAction.SYNC_NOW, environment=env, changes={"user": None, "kind": "all", "full": True}
    )
    audit.record(
        None,
        AuditAction.SETTINGS_CHANGED,
        environment=env,
        changes={"pull_interval": [15, 5], "push_enabled": [False, True]},
    )
    page = admin_client.get("/audit/").content.decode()
    assert "<code>pull_interval</code>: 15 → 5" in page
    assert "<code>push_enabled</code>: no → yes" in page
    assert "<code>user</code>: —" in page and "<code>full</code>: yes" in page
    assert "None" not in page and "[15, 5]" not in page and "True" not in page


def test_fixed_mapping_rows_show_a_lock_drawn_without_an_emoji(admin_client, env):
    assert FieldMapping.objects.filter(environment=env, fixed=True).exists()
    page = admin_client.get(f"/environments/{env.pk}/").content.decode()
    assert "🔒" not in page
    assert '<span class="lock"' in page and "<svg" in page.split('<span class="lock"', 1)[1][:200]


def test_checkboxes_sit_inside_their_labels_on_the_user_form(admin_client, env):
    page = admin_client.get(f"/environments/{env.pk}/users/add/").content.decode()
    label = page.split('<label class="check" for="id_contacts_enabled">', 1)[1].split("</label>", 1)[0]
    assert 'type="checkbox"' in label and "Synchronize contacts" in label
