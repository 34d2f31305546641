"""The Graph front end: Microsoft Graph v1.0 (and Entra ID's token endpoint) over the same store as EWS.

``frontend``  `GraphFrontEnd` (``sim.graph``): apps, tokens, throttling, delta tokens, subscriptions, TLS
``contacts``  contact folders and contacts; ``events`` calendars and events; ``extended`` extended properties
``todo``      Microsoft To Do: task lists, tasks, linkedResources, tasks delta
``translate`` translateExchangeIds: an item's id in the EWS, REST and immutable formats (delegated tokens only)
``delta``     contacts delta and the tokens; ``calendar_delta`` calendarView/delta; ``subscriptions`` webhooks
``zones``     time zone names; ``values`` date formats
``server``    the TLS listener: /v1.0, /{tenant}/oauth2/v2.0/token, openid-configuration, /_sim/
``api``       routing and the per-mailbox pipeline; ``batch`` $batch; ``odata`` query options and $filter
``auth``      tenant, app registrations, client-credentials tokens; ``tls`` the test CA (trustme)
``ids``       REST / immutable / occurrence ids; ``throttle`` 429s with Retry-After; ``errors`` error bodies

See the package docstring of `exchange_sim` for the API tests use.

Deviations from Microsoft Graph (deliberate)
--------------------------------------------
* One tenant (``contoso``); tokens are HS256 JWTs signed by the simulator (clients must treat them as opaque,
  as Microsoft asks); there is no /common or /organizations authority and no instance discovery endpoint
  (msal needs ``instance_discovery=False`` or ``validate_authority=False``).
* HTTP/1.1 only (ALPN offers no h2); the certificate is for 127.0.0.1, localhost and the bound host.
* Users are the simulator's mailboxes; a user's id is a GUID derived from the address; reading users needs
  the app role User.Read.All (the demo app has Contacts.ReadWrite, Calendars.ReadWrite, Tasks.ReadWrite.All, Mail.ReadWrite and Mail.Send only).
* ``contactFolders/contacts`` names the default Contacts folder (clients do use it; Microsoft documents
  well-known names for mail folders only). ``users/{id}/contacts/delta`` is the default folder's delta.
* Delta page size: ``Prefer: odata.maxpagesize`` up to 200, default ``sim.graph.page_size`` (10); contacts
  delta supports $select only, as documented. Lists page with $top (at most 1000) / $skip, default 10.
* $batch sub-requests run one after the other (dependency order), answers come in request order. Graph runs
  up to 4 of a mailbox's at once and queues the rest; one at a time stays within that, and the simulator's
  store serializes them anyway. ``sim.faults.latency_ms`` is a round trip: charged once per HTTP request, a
  $batch included, as EWS charges one per request whatever it carries — sub-requests add only the time the
  simulator takes to answer them (Graph's fan-out to the mailbox is within the datacenter).
* Extended property values are kept as strings; multi-value extended properties are not served.
* A contact's ``title`` and ``yomiCompanyName`` have no EWS element: they are kept for Graph only.
* All-day events are answered as floating days: their midnights in whatever ``outlook.timezone`` was asked for.
* An occurrence's change key is its series master's until it becomes an exception, so a change to the master
  brings every occurrence of the window into the next calendarView delta round.
* calendarView delta rounds are kept in memory (at most 5000 rounds): a restarted simulator answers 410 to old
  tokens. The sub-request ``dependsOn`` failure answer is 424 with code ``FailedDependency``.
* Subscriptions: basic notifications only (no ``includeResourceData``); ``users/{id}/contacts`` watches every
  contact folder (as ``messages`` watches every mail folder); a move is a ``deleted`` plus a ``created``.
  Notifications go out one batch per URL as changes happen; retries follow ``retry_delays`` (seconds, real
  time), not Graph's four hours. A ``reauthorizationRequired`` sent by the hook does not pause notifications.
  Subscriptions live in memory (not in the ``--state`` file).
* Microsoft To Do: the lists are the mailbox's task folders (the default list is the Tasks folder; there is no
  ``flaggedEmails`` list); checklistItems, attachments, task recurrence and open extensions are not served. A task's
  body is answered as Exchange keeps it (HTML; text with ``Prefer: outlook.body-content-type="text"``, and an empty
  body as empty text). ``dueDateTime``/``startDateTime``/``completedDateTime`` are days kept as midnight UTC (the
  UTC date of what was written), answered as that instant in UTC or the preferred zone. A ``$filter`` on
  ``linkedResources`` is refused (400): Graph documents none; clients list with ``$expand=linkedResources``.
  Writing a task's linkedResources is a change of the task (change key, delta). A task DELETE moves it to
  Deleted Items. Tasks delta takes ``$select`` only. To Do's own error code ``invalidRequest`` is used for its
  rules (one linkedResource at create, the default list cannot be renamed or deleted).
* ``cancel``/``accept``/``decline`` answer 202 at once; invitee copies and responses are delivered by the
  meetings layer (immediately unless ``sim.meetings.delivery_delay`` is set).
"""
