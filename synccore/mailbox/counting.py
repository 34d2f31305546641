"""Per-thread request counters for the clients built on requests (exchangelib, msal's token
requests), so run records and tests see every HTTP request a pass sends, retries included."""

from __future__ import annotations

import threading

import requests


class RequestCounter:
    """Counts, per thread, the requests sent through the adapters of `adapter_class`."""

    def __init__(self) -> None:
        self._local = threading.local()

    def sent(self) -> int:
        """Requests sent by this thread so far."""
        return getattr(self._local, "value", 0)

    def adapter_class(self) -> type[requests.adapters.HTTPAdapter]:
        """An HTTPAdapter class that counts each request it sends on this counter."""
        counter = self

        class CountingAdapter(requests.adapters.HTTPAdapter):
            def send(self, *args, **kwargs):
                counter._local.value = counter.sent() + 1
                return super().send(*args, **kwargs)

        return CountingAdapter
