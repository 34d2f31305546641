"""The synchronizer's runtime: below the edges, above the engine (`synccore/sync/`).

`service` is the one door the console, the API, the admin, the webhooks and the commands call.
Beneath it, what runs on the workers: `queue` (django-q2: enqueueing tasks, named schedules),
`scheduling` (a tick per running environment, the first passes of a start), `passes` (one pass
under its mailbox's lease, with the skip rules), `leases`, `housekeeping` (pruning), `config`
(the runtime's settings), and `push` (one module per backend). The django-q2 task entry points
stay at `synccore.tasks`, where the schedule rows name them.

Importing the package imports nothing: import the module you need.
"""
