from django.apps import AppConfig


class SyncCoreConfig(AppConfig):
    name = "synccore"
    verbose_name = "Synchronizer"

    def ready(self) -> None:
        from synccore import checks  # noqa: F401  (registers the system checks)
