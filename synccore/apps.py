from django.apps import AppConfig


class SyncCoreConfig(AppConfig):
    name = "synccore"
    verbose_name = "Synchronizer"
