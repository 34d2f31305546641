"""The demo organisation: five Contoso mailboxes with some foreign contacts and calendar items."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from exchange_sim.simulator import Simulator

DEMO_DOMAIN = "contoso.example"
DEMO_PEOPLE = (
    ("alice", "Alice Archer"),
    ("bob", "Bob Baker"),
    ("carol", "Carol Carter"),
    ("dave", "Dave Dawson"),
    ("erin", "Erin Evans"),
)
DEMO_MAILBOXES = tuple(f"{name}@{DEMO_DOMAIN}" for name, _ in DEMO_PEOPLE)
DEMO_TIME_ZONE = "Europe/Berlin"


def add_demo_mailboxes(sim: Simulator, time_zone: str = DEMO_TIME_ZONE) -> None:
    for (name, display), address in zip(DEMO_PEOPLE, DEMO_MAILBOXES, strict=True):
        sim.add_mailbox(address, display, time_zone, password=f"{name}-password")


def seed_demo_content(sim: Simulator) -> None:
    """Foreign data the synchronizer finds on its first pass: private contacts and appointments."""
    zone = ZoneInfo(DEMO_TIME_ZONE)
    today = sim.clock.now().astimezone(zone).date()
    for index, address in enumerate(DEMO_MAILBOXES):
        user = sim.user(address)
        user.create_contact(
            GivenName="Pat",
            Surname=f"Private{index}",
            EmailAddresses={"EmailAddress1": f"pat{index}@fabrikam.example"},
            PhoneNumbers={"MobilePhone": f"+49 170 555 01{index:02d}"},
            CompanyName="Fabrikam",
        )
        user.create_contact(GivenName="Sam", Surname="Supplier", CompanyName="Northwind Traders")
        start = datetime.combine(today + timedelta(days=index + 1), time(10), zone)
        user.create_event("Dentist", start, start + timedelta(hours=1), send=False, Location="Main Street 5")
        weekly = datetime.combine(today + timedelta(days=(7 - today.weekday()) % 7 or 7), time(9), zone)
        user.create_event(
            "Team jour fixe",
            weekly,
            weekly + timedelta(minutes=30),
            send=False,
            Recurrence={
                "pattern": {"type": "WeeklyRecurrence", "Interval": "1", "DaysOfWeek": "Monday", "FirstDayOfWeek": "Monday"},
                "range": {"type": "NoEndRecurrence", "StartDate": weekly.date().isoformat()},
            },
        )


def demo_simulator(**kwargs: object) -> Simulator:
    sim = Simulator(**kwargs)  # type: ignore[arg-type]
    add_demo_mailboxes(sim)
    seed_demo_content(sim)
    return sim
