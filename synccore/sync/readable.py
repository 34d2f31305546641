"""Errors as people read them (O4): a code, one sentence saying what failed and what to do next,
and the technical detail kept for a "details" disclosure and the API.

The mailbox backends already raise one error family (``MailboxError``); this turns any of them,
or anything else a pass or a check raised, into that vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from synccore.mailbox.base import (
    AccessDenied,
    AuthenticationFailed,
    MailboxError,
    MailboxNotFound,
    Throttled,
)

GRAPH = "Microsoft Graph"


@dataclass(frozen=True)
class Readable:
    code: str
    sentence: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def explain(error: BaseException, *, mailbox: str = "", server: str = "Exchange") -> Readable:
    """The readable form of an error met while talking to ``server`` about ``mailbox``."""
    detail = str(error) or type(error).__name__
    whose = f" {mailbox}" if mailbox else ""
    if isinstance(error, AuthenticationFailed):
        if server == GRAPH:
            check = "refused the application's credentials. Check the tenant id, client id and client secret"
        else:
            check = "refused the service account's credentials. Check the account and its password"
        return Readable("credentials_refused", f"{server} {check} in Settings, save, and test again.", detail)
    if isinstance(error, MailboxNotFound):
        return Readable(
            "mailbox_not_found",
            f"{server} has no mailbox{whose}. Check the sync user's mailbox address, or deactivate it.",
            detail,
        )
    if isinstance(error, AccessDenied):
        return Readable(
            "access_denied",
            f"The service account may not open the mailbox{whose}. Give it impersonation (or delegate) "
            "rights on that mailbox in Exchange, then test again.",
            detail,
        )
    if isinstance(error, Throttled):
        return Readable(
            "throttled",
            f"{server} is busy and asked us to wait; the synchronizer tries again on its own.",
            detail,
        )
    if isinstance(error, MailboxError) and not error.permanent:
        return Readable(
            "unreachable",
            f"{server} did not answer normally. Check its address in Settings and that it is up; "
            "the synchronizer tries again on its own.",
            detail,
        )
    if isinstance(error, MailboxError):
        return Readable(
            "refused",
            f"{server} refused the request. Check the connection settings; the details say what it answered.",
            detail,
        )
    return Readable(
        "internal",
        "The synchronizer met an unexpected error. The details help the people who run this server.",
        detail,
    )
