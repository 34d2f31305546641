from django.apps import AppConfig


class SyncAdminConfig(AppConfig):
    name = "syncadmin"
    verbose_name = "Administration console"
