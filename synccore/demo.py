"""Realistic, deterministic demo data for the embedded default (used by ``seed_demo``).

Every record is keyed by a fixed external id, so seeding again updates instead of duplicating.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from synccore.models import (
    Activity,
    ActivityType,
    Attendee,
    AttendeeType,
    AuthType,
    Backend,
    Company,
    Contact,
    Country,
    Employee,
    Environment,
    Language,
    SalesGroup,
    SyncUser,
)

DEMO_DOMAIN = "contoso.example"
DEMO_USERS = [
    ("alice", "Alice Archer"),
    ("bob", "Bob Baker"),
    ("carol", "Carol Chen"),
    ("dave", "Dave Dawson"),
    ("erin", "Erin Evans"),
]
OTHER_EMPLOYEES = [("frank", "Frank Fischer"), ("grace", "Grace Green")]
SERVICE_ACCOUNT = ("svc@contoso.example", "demo-password")
# The demo organisation's app registration for Microsoft Graph (exchange_sim registers it).
GRAPH_APP = ("demo-client", "demo-secret")
TOKEN_PATH = "/oauth2/v2.0/token"


@dataclass(frozen=True)
class GraphTarget:
    """Where the demo reaches Microsoft Graph: the endpoint, the token URL, an optional CA bundle."""

    graph_url: str
    token_url: str
    ca_bundle: str = ""

    @property
    def authority(self) -> str:
        """The token URL without /oauth2/v2.0/token (what msal takes as authority)."""
        return self.token_url.rstrip("/").removesuffix(TOKEN_PATH)

    @property
    def tenant(self) -> str:
        return self.authority.rsplit("/", 1)[-1]

    def problems(self) -> list[str]:
        found = []
        if not self.graph_url.startswith("https://"):
            found.append("--graph-url must be an https URL (e.g. https://127.0.0.1:8766/v1.0)")
        if not (self.token_url.startswith("https://") and self.token_url.rstrip("/").endswith(TOKEN_PATH)):
            found.append(f"--token-url must be an https URL ending in {TOKEN_PATH}")
        return found
@dataclass(frozen=True)
class DominoTarget:
    """Where the demo reaches HCL Domino: the REST API base (``/v1/auth`` and ``/pim-v1/…`` hang
    from it) and an optional CA bundle; the demo service account logs in."""

    domino_url: str
    ca_bundle: str = ""

    def problems(self) -> list[str]:
        if not self.domino_url.startswith(("http://", "https://")):
            return ["--domino-url must be an http(s) URL (e.g. http://127.0.0.1:8765/api)"]
        return []


ADMIN_USERNAME = "admin"

COUNTRIES = [
    ("NL", "Netherlands"),
    ("DE", "Germany"),
    ("US", "United States"),
    ("GB", "United Kingdom"),
    ("FR", "France"),
    ("BE", "Belgium"),
]
LANGUAGES = [("nl", "Dutch"), ("de", "German"), ("en", "English"), ("fr", "French")]
COUNTRY_LANGUAGE = {"NL": "nl", "DE": "de", "US": "en", "GB": "en", "FR": "fr", "BE": "nl"}
CITIES = {
    "NL": ("Amsterdam", "1012 AB"),
    "DE": ("Berlin", "10115"),
    "US": ("Seattle", "98101"),
    "GB": ("London", "EC1A 1BB"),
    "FR": ("Paris", "75001"),
    "BE": ("Antwerp", "2000"),
}
COMPANIES = [
    ("Fabrikam", "Sales", "NL"),
    ("Fabrikam", "Service", "NL"),
    ("Northwind Traders", "", "US"),
    ("Adventure Works", "", "US"),
    ("Tailspin Toys", "", "GB"),
    ("Wingtip Toys", "Retail", "DE"),
    ("Litware", "", "FR"),
    ("Proseware", "", "BE"),
    ("Woodgrove Bank", "", "GB"),
    ("Alpine Ski House", "", "DE"),
]
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Chloé",
    "Daan",
    "Eva",
    "Finn",
    "Greta",
    "Hugo",
    "Iris",
    "Jan",
    "Klaus",
    "Lena",
    "Marc",
    "Nina",
    "Olaf",
    "Pia",
    "Quinten",
    "Rosa",
    "Sven",
    "Tess",
    "Ugo",
    "Vera",
    "Wim",
    "Yara",
]
LAST_NAMES = [
    "de Vries",
    "Müller",
    "Smith",
    "Jansen",
    "Dubois",
    "Bakker",
    "Schmidt",
    "Brown",
    "Peeters",
    "Martin",
    "Visser",
    "Weber",
    "Taylor",
    "Janssens",
    "Bernard",
    "Meijer",
    "Wagner",
    "Wilson",
]
JOB_TITLES = ["Purchasing manager", "CFO", "Account manager", "Office manager", "CEO", "IT lead", "Buyer"]
MEETING_TOPICS = [
    "Quarterly review",
    "Contract renewal",
    "Product demo",
    "Kick-off",
    "Pricing discussion",
    "Service call",
    "Site visit",
    "Follow-up call",
    "Training",
    "Budget planning",
]
TIME_ZONES = ["Europe/Amsterdam", "Europe/Berlin", "America/New_York", "Europe/London"]


@dataclass
class DemoResult:
    environment: Environment
    users: int
    contacts: int
    activities: int
    admin_username: str
    admin_password: str


def demo_mailbox(index: int) -> tuple[str, str]:
    """The address and name of the index-th demo user (alice…erin, then user06…)."""
    if index < len(DEMO_USERS):
        local, name = DEMO_USERS[index]
        return f"{local}@{DEMO_DOMAIN}", name
    return f"user{index + 1:02d}@{DEMO_DOMAIN}", f"Demo User {index + 1}"


def _admin_password() -> str:
    configured = getattr(settings, "DEMO_ADMIN_PASSWORD", "")
    if configured:
        return configured
    path = settings.LOCAL_DIR / "demo_admin_password"
    if path.exists():
        return path.read_text().strip()
    settings.LOCAL_DIR.mkdir(exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.write_text(password)
    path.chmod(0o600)
    return password


def admin_login() -> tuple[str, str]:
    """The demo administrator's user name and password, as seed_demo set them."""
    return ADMIN_USERNAME, _admin_password()


def ensure_admin() -> tuple[str, str]:
    password = _admin_password()
    user, _ = get_user_model().objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"email": f"admin@{DEMO_DOMAIN}"}
    )
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return ADMIN_USERNAME, password


def _upsert(model, environment: Environment, external_id: str, **fields):
    obj, _ = model.all_objects.update_or_create(
        environment=environment, external_id=external_id, defaults={**fields, "deleted_at": None}
    )
    return obj


@transaction.atomic
def seed_demo(
    *,
    environment_name: str = "Demo",
    users: int = 5,
    contacts: int = 50,
    activities: int = 20,
    ews_url: str = "",
    graph: GraphTarget | None = None,
    domino: DominoTarget | None = None,
    now: datetime | None = None,
) -> DemoResult:
    rng = random.Random(20261121)
    now = now or timezone.now()
    environment, _ = Environment.objects.get_or_create(
        name=environment_name, defaults={"description": "Demo CRM data against the local Exchange simulator."}
    )
    _configure_settings(environment, ews_url or settings.EXCHANGE_SIM_DEFAULT_URL, graph, domino)

    countries = {
        code: _upsert(Country, environment, f"country-{code}", name=name, iso_code=code)
        for code, name in COUNTRIES
    }
    languages = {
        code: _upsert(Language, environment, f"language-{code}", name=name, iso_code=code)
        for code, name in LANGUAGES
    }

    employees = []
    for index in range(max(users, len(DEMO_USERS))):
        email, name = demo_mailbox(index)
        local = email.split("@")[0]
        employees.append(
            _upsert(Employee, environment, f"employee-{local}", name=name, email=email, username=local)
        )
    for local, name in OTHER_EMPLOYEES:
        employees.append(
            _upsert(
                Employee,
                environment,
                f"employee-{local}",
                name=name,
                email=f"{local}@{DEMO_DOMAIN}",
                username=local,
            )
        )

    groups = {
        "Benelux": employees[0:2],
        "DACH": employees[2:3],
        "Enterprise": employees[3:5],
    }
    sales_groups = []
    for name, members in groups.items():
        group = _upsert(SalesGroup, environment, f"salesgroup-{name.lower()}", name=name)
        group.members.set(members)
        sales_groups.append(group)

    companies = []
    for index, (name, division, code) in enumerate(COMPANIES):
        city, postal = CITIES[code]
        domain = name.lower().replace(" ", "") + ".example"
        companies.append(
            _upsert(
                Company,
                environment,
                f"company-{index + 1:03d}",
                name=name,
                division=division,
                country=countries[code],
                city=city,
                postal_code=postal,
                street=f"{rng.randint(1, 200)} Main Street",
                email=f"info@{domain}",
                phone=f"+{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100000, 999999)}",
                website=f"https://www.{domain}",
                synchronize=True,
            )
        )

    for index in range(contacts):
        _seed_contact(environment, index, rng, companies, languages, employees, sales_groups)
    # A re-seed with fewer contacts drops the extra ones (as tombstones if they were synced).
    Contact.objects.filter(environment=environment, external_id__startswith="contact-").exclude(
        external_id__in=[f"contact-{i + 1:05d}" for i in range(contacts)]
    ).delete()

    for index in range(users):
        email, _ = demo_mailbox(index)
        SyncUser.objects.update_or_create(
            environment=environment, mailbox_email=email, defaults={"employee": employees[index]}
        )

    extra = [demo_mailbox(i)[0] for i in range(users, users + len(DEMO_USERS))]
    SyncUser.objects.filter(environment=environment, mailbox_email__in=extra).update(active=False)

    for index in range(activities):
        _seed_activity(environment, index, rng, now, employees[: max(users, 1)], employees)

    username, password = ensure_admin()
    return DemoResult(environment, users, contacts, activities, username, password)


def _configure_settings(
    environment: Environment, ews_url: str, graph: GraphTarget | None = None, domino: DominoTarget | None = None
) -> None:
    s = environment.settings
    s.backend = Backend.EWS
    s.ews_url = ews_url
    s.auth_type = AuthType.BASIC
    s.service_account, s.service_password = SERVICE_ACCOUNT
    if graph is not None:
        s.backend = Backend.GRAPH
        s.graph_endpoint = graph.graph_url
        s.authority_url = graph.authority
        s.ca_bundle = graph.ca_bundle
        s.oauth_tenant_id = graph.tenant
        s.oauth_client_id, s.oauth_client_secret = GRAPH_APP
    s.synchronize_contacts = True
    if domino is not None:
        # Contacts are not offered over Domino (docs/domino.md): they refuse there.
        s.backend = Backend.DOMINO
        s.domino_url = domino.domino_url
        s.ca_bundle = domino.ca_bundle
        s.synchronize_contacts = False
    s.synchronize_activities = True
    s.pull_interval = 5
    s.internal_domains = DEMO_DOMAIN
    s.save()


def _seed_contact(environment, index, rng, companies, languages, employees, sales_groups) -> None:
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[(index * 7) % len(LAST_NAMES)]
    company = companies[index % len(companies)]
    code = company.country.iso_code
    domain = company.name.lower().replace(" ", "") + ".example"
    local = f"{first}.{last}".lower().replace(" ", "").replace("é", "e").replace("ü", "u")
    contact = _upsert(
        Contact,
        environment,
        f"contact-{index + 1:05d}",
        first_name=first,
        last_name=last,
        middle_name="",
        company=company,
        job_title=JOB_TITLES[index % len(JOB_TITLES)],
        email1=f"{local}{index + 1}@{domain}",
        email2=f"{local}{index + 1}@home.example" if index % 5 == 0 else "",
        business_phone=f"+{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        mobile_phone=f"+{rng.randint(10, 99)} 6 {rng.randint(10000000, 99999999)}" if index % 3 else "",
        street=company.street,
        postal_code=company.postal_code,
        city=company.city,
        country=company.country,
        language=languages[COUNTRY_LANGUAGE[code]],
        comment="Met at the trade fair." if index % 4 == 0 else "",
        synchronize=index % 10 != 9,
        rep=employees[index % 5],
    )
    contact.sales_groups.set([sales_groups[index % len(sales_groups)]])
    contact.favorite_of.set([employees[(index + 2) % 5]] if index % 6 == 0 else [])


def _seed_activity(environment, index, rng, now, sync_employees, employees) -> None:
    tz_name = TIME_ZONES[index % len(TIME_ZONES)]
    tz = ZoneInfo(tz_name)
    day = (now.astimezone(tz) + timedelta(days=index - 3)).date()  # a few in the past, most ahead
    hour = 9 + index % 8
    start = datetime(day.year, day.month, day.day, hour, 0, tzinfo=tz)
    kind = index % 6
    organizer = sync_employees[index % len(sync_employees)]
    fields = {
        "type": ActivityType.CALL if kind == 1 else ActivityType.APPOINTMENT,
        "subject": f"{MEETING_TOPICS[index % len(MEETING_TOPICS)]} #{index + 1}",
        "comment": "Prepare the figures." if index % 3 == 0 else "",
        "location": "Room 4.12" if kind in (0, 3) else "",
        "start": start,
        "end": start + timedelta(minutes=30 if kind == 1 else 60),
        "all_day": False,
        "time_zone": tz_name,
        "private": kind == 5,
        "reminder_minutes": None,
        "recurrence": "",
        "recurrence_exdates": [],
        "recurrence_exceptions": [],
        "synchronize": True,
        "created_by_erp": True,
        "organizer": organizer,
    }
    if kind == 2:  # all-day, sometimes multi-day
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        fields.update(
            all_day=True,
            start=midnight,
            end=midnight + timedelta(days=1 + index % 3),
            subject=f"Trade fair #{index + 1}",
        )
    if kind == 4:  # weekly series with one removed occurrence
        fields.update(
            recurrence="FREQ=WEEKLY;COUNT=8", recurrence_exdates=[(start + timedelta(weeks=2)).isoformat()]
        )
    activity = _upsert(Activity, environment, f"activity-{index + 1:04d}", **fields)

    attendees: list[dict] = [
        {
            "type": AttendeeType.EMPLOYEE,
            "employee": organizer,
            "email": organizer.email,
            "name": organizer.name,
            "meeting_organizer": True,
        }
    ]
    if kind in (0, 3, 4):  # meetings among colleagues, with a customer
        colleague = employees[(index + 1) % len(sync_employees)] if len(sync_employees) > 1 else employees[-1]
        if colleague != organizer:
            attendees.append(
                {
                    "type": AttendeeType.EMPLOYEE,
                    "employee": colleague,
                    "email": colleague.email,
                    "name": colleague.name,
                }
            )
        contact = (
            Contact.objects.filter(environment=environment)
            .exclude(email1="")
            .order_by("external_id")[index % 10 : index % 10 + 1]
            .first()
        )
        if contact:
            attendees.append(
                {
                    "type": AttendeeType.CONTACT,
                    "contact": contact,
                    "email": contact.email1,
                    "name": contact.full_name,
                }
            )
    if kind == 3:
        attendees.append(
            {"type": AttendeeType.OTHER, "email": "partner@fourthcoffee.example", "name": "Fourth Coffee"}
        )
    keep = []
    for data in attendees:
        attendee, _ = Attendee.objects.update_or_create(
            activity=activity,
            email=data["email"],
            defaults={k: v for k, v in data.items() if k != "email"} | {"invite": True},
        )
        keep.append(attendee.pk)
    activity.attendees.exclude(pk__in=keep).delete()
