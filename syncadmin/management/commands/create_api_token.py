from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken

from syncadmin.roles import role_of


class Command(BaseCommand):
    help = "Create an API token for a user; the token is the last line of the output."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"The user {username!r} is inactive.")
        instance, token = AuthToken.objects.create(user=user)
        expiry = f"expires {instance.expiry:%Y-%m-%d %H:%M} UTC" if instance.expiry else "never expires"
        role = role_of(user) or "no role (the API will refuse every request)"
        self.stdout.write(
            f"Token for {username} ({role}); {expiry}. Send it as: Authorization: Token <token>"
        )
        self.stdout.write(token)
