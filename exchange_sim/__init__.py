"""exchange_sim: a loopback Exchange that the real exchangelib client works against over HTTP.

Layout
------
``store.py``        the mailbox store with Exchange semantics (ids, change keys, folders, journal, sync states)
``calendar.py``     recurrence expansion, occurrences/exceptions, Windows time zones
``tasks.py``        task items: completion (Status / PercentComplete / CompleteDate), dates kept as days
``meetings.py``     invitations, updates, cancellations and responses between simulator mailboxes
``notifications.py`` pull and streaming subscriptions fed from the store's journal
``user.py``         `MailboxUser`: act like a person in Outlook
``ews/``            the EWS SOAP front end: ``codec`` (XML <-> store values), ``operations`` (folders, items,
                    FindItem, SyncFolderItems), ``calendar_ops`` (occurrence ids, CalendarView, meeting
                    responses), ``notification_ops`` (Subscribe, GetEvents, GetStreamingEvents),
                    ``directory_ops`` (ConvertId, ResolveNames), ``restriction``, ``schema_order``
``server.py``       HTTP/1.1 keep-alive server, auth, faults, SOAP envelopes; ``control.py`` the /_sim/ API
``simulator.py``    `Simulator`, tying the above together; ``faults.py`` switches, counters, request log
``schema.py``       validation against messages.xsd/types.xsd; ``demo.py`` the demo organisation
``graph/``          the Microsoft Graph v1.0 front end over the same store, served over TLS (see "Graph" below)
``__main__.py``     ``python -m exchange_sim --port 0 ...`` prints ``EWS endpoint: http://HOST:PORT/EWS/Exchange.asmx``,
                    ``Graph endpoint: https://HOST:PORT/v1.0``, ``Token endpoint: https://HOST:PORT/contoso/oauth2/v2.0/token``
                    and ``CA bundle: PATH``; ``--app CLIENT_ID:SECRET[:MAILBOX,...]`` (repeatable, default the demo
                    app ``demo-client`` / ``demo-secret``), ``--graph-port``, ``--tls-dir DIR``, ``--no-graph``

It imports nothing of the product, and no product module imports it.

In tests (fixtures in tests/fixtures/exchange_sim.py)
-----------------------------------------------------
``exchange_sim`` is a started `Simulator` with the five demo mailboxes (alice, bob, carol, dave, erin
@contoso.example, empty), Basic auth and the service account ``svc@contoso.example`` / ``demo-password``
that may impersonate every mailbox. ``exchange_sim_factory(auth="ntlm", demo=True, mailboxes=[...],
latency_ms=..)`` builds others. A test fails at teardown if any request or response broke the EWS schema.

    sim = exchange_sim
    sim.url                       # "http://127.0.0.1:PORT/EWS/Exchange.asmx"
    sim.credentials               # ("svc@contoso.example", "demo-password")
    sim.users                     # name -> UserAccount(name, password, mailbox, service_account)
    sim.add_mailbox("zoe@contoso.example", "Zoe", "Europe/Berlin", password="zoe-pw")
    sim.store                     # the Store (Exchange-level API, returns copies)

Acting as a person in Outlook (`MailboxUser`; folders by distinguished name, path or id)::

    alice = sim.user("alice@contoso.example")
    c = alice.create_contact(GivenName="Ann", Surname="Lee",
                             EmailAddresses={"EmailAddress1": "ann@x.example"},
                             PhoneNumbers={"BusinessPhone": "+49 30 1"},
                             PhysicalAddresses={"Business": {"Street": "Main 1", "City": "Berlin"}})
    alice.edit(c, JobTitle="CEO", PhoneNumbers=None)   # None clears a field; change key moves
    alice.delete(c)                 # to Deleted Items (new id), alice.delete(c, hard=True) removes
    alice.move(c, "contacts/CRM")   # new id, as Exchange
    alice.create_folder("CRM", parent="contacts")
    alice.contacts("contacts/CRM")  # list[Item]; alice.all_contacts() across folders
    alice.find(Surname="Lee"); alice.find_by_extended("CrmSyncId", "crm-42")
    item.props["GivenName"]; item.extended_value("CrmSyncId"); item.id; item.changekey; item.body_html
    alice.create_event("Review", start, end, RequiredAttendees=[{"Mailbox": {"EmailAddress": "bob@contoso.example"}}])
    alice.view(start, end)          # calendar view with recurring series expanded
    occ = alice.occurrence(series, 2); alice.edit(occ, Start=..., End=...)   # now an exception
    alice.delete(alice.occurrence(series, 3))                                # a deleted occurrence
    alice.edit(meeting, Location="B")  # organizer edits go out to attendees (send=False: they don't)
    bob.accept(item) / decline / tentative / dismiss_reminder(item)
    carol.receive_meeting("Supplier call", start, end, "ext@fabrikam.example", uid="EXT-1")  # external organizer
    alice.touch(item)               # Exchange's own rewrite: only the change key moves
    task = alice.create_task("Call Ann", DueDate=date(2027, 3, 10), Importance="High")   # Tasks folder = To Do's default list
    alice.complete_task(task)       # Status Completed, PercentComplete 100, CompleteDate today (see `tasks`)
    alice.edit(task, Status="NotStarted"); alice.tasks()

Item refs may be a store `Item`, an id string, or anything with ``.id`` (an exchangelib item).
Property names are EWS element names; values are str/bool/int, aware datetimes, lists and dicts.
Extended properties: ``ExtendedKey.create("String", property_set_id=GUID, name="CrmSyncId")`` as key of
``item.extended`` / ``alice.set_extended(item, key, value)``.

Outside pytest: ``with Simulator() as sim: sim.add_mailbox(...)`` or ``exchange_sim.demo.demo_simulator()``
(the seeded demo organisation, not yet started).

Counters, faults, clock::

    sim.counters["CreateItem"]; sim.counters.total(); sim.counters.snapshot(); sim.counters.reset()
    sim.counters.for_mailbox("alice@contoso.example", "UpdateItem")   # by X-AnchorMailbox
    sim.counters.connections      # TCP connections accepted (keep-alive); auth handshake legs are not requests
    sim.faults.server_busy(times=2, back_off_ms=500, operation="CreateItem")   # -> ErrorServerBusy
    sim.faults.http_503(times=1)          # -> ErrorServerBusy (exchangelib turns 503 into it)
    sim.faults.unauthorized(times=3)      # 401 burst -> UnauthorizedError
    sim.faults.drop_connection(times=1)   # hang up -> ErrorTimeoutExpired / ErrorServerBusy
    sim.faults.invalid_sync_state(times=1)            # -> ErrorInvalidSyncStateData
    sim.faults.mailbox_move("bob@contoso.example")    # -> ErrorMailboxMoveInProgress
    sim.faults.max_connections_per_account = 1        # -> ErrorExceededConnectionCount beyond it
    sim.faults.budget(requests=50, per_seconds=60)     # throttling on the simulator clock -> ErrorServerBusy
    sim.faults.latency_ms = 20; sim.faults.clear()
    sim.clock.set(datetime(2027, 3, 28, tzinfo=UTC), frozen=True); sim.clock.advance(timedelta(days=1))
    sim.request_log.enabled = True; sim.request_log.entries()
    sim.schema_violations         # list of schema.Violation
    sim.internal_errors           # exceptions the simulator raised while answering (the fixture fails on both)

Meetings, notifications, auth::

    sim.meetings.delivery_delay = 2.0         # seconds before invitee copies appear (default 0)
    sim.subscriptions.all()                   # live pull/streaming subscriptions (.owner, .server, .mailbox)
    sim.subscriptions.mailbox_servers = 4     # spread mailboxes over 4 Mailbox servers: affinity matters
    sim.streaming.seconds_per_minute = 1      # GetStreamingEvents ConnectionTimeout=1 lasts 1 s in tests
    sim.streaming.heartbeat = 30              # seconds between ConnectionStatus OK keep-alives
    sim.streaming.open_stream_sizes()         # subscriptions per open stream, e.g. [50, 200]
    sim.streaming.streams_served              # GetStreamingEvents requests that opened a stream
    sim.streaming.drop_all()                  # hang up every open stream mid-way (network failure)

A subscription belongs to the account that created it: one GetStreamingEvents may read up to 200
subscriptions of that account, whichever mailboxes they watch (more: ErrorInvalidArgument; another
account's: ErrorSubscriptionAccessDenied; unknown or on another Mailbox server:
ErrorSubscriptionNotFound; the failing ids in ErrorSubscriptionIds). A Subscribe with
X-PreferServerAffinity: true answers Set-Cookie X-BackEndOverrideCookie; requests carrying it (as a
cookie or a header) with X-PreferServerAffinity reach that cookie's server, others X-AnchorMailbox's.
    exchange_sim_factory(auth="ntlm")         # NTLM (pyspnego acceptor, one handshake per TCP connection);
                                              # users log in as "svc@contoso.example" or "CONTOSO\\svc"

exchangelib note: with max_connections=1 a blocking ``get_streaming_events`` holds the only connection
of that Account's protocol; give the listener its own Account/Configuration.

The same is offered over HTTP under ``/_sim/`` on the EWS port (see `control`).

Graph
-----
Every started Simulator also serves Microsoft Graph v1.0 over HTTPS on a second port, with a test CA made
once per process (trustme). One organisation, two doors: what is written over EWS is read over Graph and
the other way round (property names differ, the store is the same; the sync id written over EWS as
``ExtendedKey.create("String", property_set_id=GUID, name="CrmSyncId")`` is the Graph extended property
``String {GUID} Name CrmSyncId``)::

    sim.graph_url                 # "https://127.0.0.1:PORT/v1.0"
    sim.token_url                 # "https://127.0.0.1:PORT/contoso/oauth2/v2.0/token" (client credentials)
    sim.authority                 # "https://127.0.0.1:PORT/contoso": msal's authority (instance_discovery=False)
    sim.ca_bundle                 # PEM file of the test CA (httpx/msal verify=...)
    sim.graph_app, sim.tenant     # ("demo-client", "demo-secret"), "contoso" (GUID and contoso.onmicrosoft.com too)
    sim.graph.add_app("crm", "pw", mailboxes=["alice@contoso.example"])   # an application access policy: 403 elsewhere
    sim.graph.add_app("dir", "pw", roles=("User.Read.All", "Contacts.ReadWrite"))  # default roles: Contacts/Calendars.ReadWrite, Tasks.ReadWrite.All, Mail.ReadWrite, Mail.Send
    sim.graph.expire_tokens()     # or sim.clock.advance(timedelta(hours=1)): 401 InvalidAuthenticationToken
    sim.counters.for_mailbox("alice@contoso.example", protocol="graph")   # Graph requests are "graph.<resource>.<action>"
    Simulator(graph=False)        # EWS only

Errors are Graph's ``{"error": {"code", "message", "innerError"}}``. The EWS faults apply to Graph requests
too (``http_503`` -> 503 with Retry-After, ``drop_connection``, ``unauthorized`` -> 401, ``latency_ms``).
Deviations from real Graph are listed in `exchange_sim.graph`.

Served under /v1.0 (``{user}`` is an address or the user's id): ``users/{user}/contactFolders`` (+ ``/{id}``,
``/{id}/childFolders``; the default folder is ``contactFolders/contacts``), ``users/{user}/contacts`` and
``contactFolders/{id}/contacts`` (create, read, PATCH, DELETE to Deleted Items, ``permanentDelete``),
``contactFolders/{id}/contacts/delta``, ``$batch``; OData ``$select``, ``$filter`` (incl.
``singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')``), ``$expand=
singleValueExtendedProperties($filter=id eq '...')``, ``$top``/``$skip``/``$orderby``, ``@odata.nextLink``;
headers ``If-Match`` (412 on a stale change key), ``Prefer: IdType="ImmutableId"``, ``odata.maxpagesize``::

    sim.graph.throttling.concurrency = 4                      # per app and mailbox; off by default -> 429
    sim.graph.throttling.budget(requests=100, per_seconds=600)  # on the simulator clock -> 429 + Retry-After
    sim.faults.throttled(times=2, retry_after=3, operation="graph.contacts.create", mailbox=...)  # forced 429
    sim.faults.arm("invalid_sync_state", operation="graph.contacts.delta")   # next delta with a token: 410
    sim.graph.invalidate_delta_tokens()                       # every delta/skip token: 410 SyncStateNotFound
    sim.counters.sub_requests("graph.contacts.create", "alice@contoso.example")   # $batch sub-requests

Calendar: ``users/{user}/calendars``, ``/calendar``, ``events`` (also under ``calendar/`` and ``calendars/{id}/``):
create, read, PATCH (an occurrence id makes an exception), DELETE, ``permanentDelete``, ``cancel``, ``accept`` /
``tentativelyAccept`` / ``decline``, ``events/{id}/instances``, ``calendarView`` and ``calendarView/delta``
(startDateTime/endDateTime baked into the token; occurrences and exceptions, never masters; ``@removed`` for
what left the window, and for events changed outside it, as Graph documents). Creating or updating a meeting
through Graph always sends (invitee copies appear as with EWS SendToAllAndSaveCopy; ``sim.meetings.delivery_delay``
applies); deleting or cancelling the organizer's copy sends cancellations. ``transactionId`` makes a create
idempotent; ``Prefer: outlook.timezone`` sets the zone of answers (Windows or IANA names, else UTC).

Microsoft To Do over the same store (`exchange_sim.graph.todo`): ``users/{user}/todo/lists`` (the default list,
``wellknownListName: defaultList``, is the EWS Tasks folder; other lists are task folders), ``lists/{id}/tasks``
(list with ``$top``/``$skip``/``$filter``/``$expand=linkedResources``, create, read, PATCH with ``If-Match``/412,
DELETE), ``tasks/delta`` (``@removed``, nextLink/deltaLink), ``tasks/{id}/linkedResources`` (+ ``/{id}``); the app
role is Tasks.ReadWrite.All (or Tasks.Read.All to read). A client's own id rides in a linkedResource's
``externalId``; Graph documents no filter on it, so find a task by listing with ``$expand=linkedResources``.

Mail over the same store (`exchange_sim.graph.mail`, semantics in `exchange_sim.messages`): ``users/{user}/mailFolders/{folder}``
(well-known names ``inbox``, ``sentitems``, ``drafts``…; ``childFolders``), ``mailFolders/{folder}/messages`` and
``messages/delta`` (``$select`` baked into the tokens, ``@removed``), ``users/{user}/messages/{id}`` (read with
``$expand=attachments($select=name)``, PATCH ``categories`` / ``isRead`` on any message, the rest on drafts only,
DELETE), ``POST users/{user}/messages`` (a draft), ``messages/{id}/send`` and ``sendMail`` (delivered to the
simulator's recipients, the copy in Sent Items); roles Mail.ReadWrite (Mail.Read to read) and Mail.Send. Every
message has an ``internetMessageId`` its sent and received copies share; EWS sees the same messages
(``InternetMessageId``, ``Categories``, ``IsDraft``). Tests put a message into a mailbox with
``sim.user(a).receive_message("Offer", "ann@fabrikam.example", categories=["CRM"])`` or ``send_message`` (or
``POST /_sim/mailboxes/<address>/messages``).

Change notifications: ``POST /v1.0/subscriptions`` (resources ``users/{user}/contacts``,
``users/{user}/contactFolders/{id}/contacts``, ``users/{user}/events``, ``users/{user}/calendar/events``,
``users/{user}/calendars/{id}/events``, ``users/{user}/todo/lists/{id}/tasks``, ``users/{user}/messages`` (every mail
folder), ``users/{user}/mailFolders/{id}/messages``) first POSTs ``?validationToken=...`` to the notificationUrl (and the
lifecycleNotificationUrl) and wants it echoed as 200 text/plain, else 400 ValidationError; then every change of
the store (from Graph, EWS, Outlook or meeting delivery) is POSTed there with ``clientState``,
``subscriptionId``, ``changeType``, ``resource`` and ``resourceData``. Plain http is allowed for loopback URLs.
Expiry on the simulator clock (at most 10080 minutes ahead), renewal by PATCH, DELETE, ``reauthorize``::

    sim.graph.subscriptions.all(); sim.graph.subscriptions.wait_idle()      # everything notified so far
    sim.graph.subscriptions.lifecycle(sub_id, "reauthorizationRequired")    # or "missed", "subscriptionRemoved"
    sim.graph.subscriptions.retry_delays = [0.1]   # a failing webhook: retries, then dropped -> "missed"
    sim.graph.subscriptions.validation_timeout = 10.0; sim.graph.subscriptions.delivery_timeout = 3.0

The fixture `webhook_receiver` (tests/fixtures/exchange_sim.py) is a loopback webhook that answers the handshake
and records what arrives (``.url``, ``.lifecycle_url``, ``.wait_for(n)``, ``.validation = "wrong"``).

EWS operations: GetFolder, FindFolder, CreateFolder, UpdateFolder (rename), DeleteFolder, MoveFolder, EmptyFolder,
CreateItem (incl. AcceptItem / TentativelyAcceptItem / DeclineItem / CancelCalendarItem, and messages sent at once),
GetItem, UpdateItem, DeleteItem, MoveItem, CopyItem, SendItem, CreateAttachment / GetAttachment / DeleteAttachment
(file and item attachments, ids of their own, HasAttachments), FindItem (IndexedPageItemView, CalendarView),
SyncFolderItems (Create / Update / ReadFlagChange / Delete), SyncFolderHierarchy, Subscribe (pull, streaming),
Unsubscribe, GetEvents, GetStreamingEvents, ConvertId, ResolveNames. Everything else answers ErrorInvalidOperation.

A mailbox has the folder tree of a new Exchange Online mailbox (``store.MAILBOX_FOLDERS``: ``root`` above
"Top of Information Store", Recoverable Items, Finder, Common Views, Sync Issues, the Contacts sub-folders...);
its standard folders cannot be deleted or moved. Sending mail (`mail.py`) delivers to the Inboxes of simulator
mailboxes; an invitation also puts a MeetingRequest in the attendee's Inbox (`meetings.py`).

Deviations from Exchange
------------------------
``bench/fidelity.sh`` runs exchangelib 5.6.0's own test suite (``../shared/exchangelib-tests``; its authors run it
against real Exchange) against a fresh simulator. What it still fails, and why:

Real-server-only features (an organisation's services the simulator does not stand in for):
- test_contacts ``test_find_people``, ``test_fetch_personas``, ``test_get_persona_failure``: FindPeople / GetPersona
  read Exchange's people index (personas merged across folders and the directory); not offered.
- test_folder ``test_public_folders_root``: public folders (``publicfoldersroot``) live on public folder mailboxes.
- test_folder ``test_user_configuration``: Get/Create/Update/DeleteUserConfiguration (per-folder FAI configuration
  items) are not offered.
- test_generic ``test_archive``: ArchiveItem needs an archive mailbox.
- test_generic ``test_export_and_upload``, ``test_export_with_error``: ExportItems / UploadItems carry Exchange's
  own opaque item stream (a mailbox export format); not offered.
- test_generic ``test_only_fields`` (the ``mime_content`` sub-test): MimeContent (an item as RFC 822 / vCard /
  iCalendar text) is not produced.
- test_sync ``test_push_subscribe``, ``test_push_subscribe_from_account``: push subscriptions call back a URL
  (https://example.com/foo in the test); the simulator offers pull and streaming subscriptions only.

Deliberate differences:
- test_sync ``test_streaming_invalid_subscription``: Exchange writes the ids in ErrorSubscriptionIds as
  ``m:SubscriptionId``, against its own XSD (``t:SubscriptionId``); the simulator's answers must validate, so the
  ids are there but exchangelib does not read them (it raises ErrorInvalidSubscription all the same).
- test_contacts ``test_text_field_settings`` (the ``business_homepage`` sub-test): the request carries 4,000
  random characters with spaces as BusinessHomePage, which is no xs:anyURI; the simulator validates requests against
  the XSD and refuses it (ErrorSchemaValidation), Exchange stores it.
- test_folder ``test_update``: exchangelib writes a random folder PermissionSet with its elements out of the XSD's
  order; the simulator refuses the request (ErrorSchemaValidation), and keeps no folder permissions.
- test_folder ``test_extended_properties``: a folder's PR_MESSAGE_SIZE_EXTENDED (0x0E08) and other computed MAPI
  properties of folders are not kept (no extended properties on folders).
- DeleteItem ignores a stale change key (as Exchange does: DeleteItem never compares change keys) and refuses a
  malformed one (ErrorInvalidChangeKey); a name part of a contact longer than 255 characters is refused on update
  (ErrorPropertyUpdate) but taken on create.
"""

from exchange_sim.simulator import Simulator, UserAccount
from exchange_sim.store import ExtendedKey, Item, Store, StoreError
from exchange_sim.user import MailboxUser

__all__ = ["ExtendedKey", "Item", "MailboxUser", "Simulator", "Store", "StoreError", "UserAccount"]
