"""exchange_sim under the profiler, for BENCH_PROFILE=DIR (see _harness.start_simulator): every
request thread (EWS and Graph) is profiled and the sum is written to DIR/simulator.prof when the
simulator stops. Nothing here is imported by the product or the simulator."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where email.py and calendar.py would shadow
# the standard library's modules: the project instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

import cProfile
import os
import pstats
import socketserver
import threading
import time

_lock = threading.Lock()
_stats: list[pstats.Stats] = []
_original = socketserver.ThreadingMixIn.process_request_thread


def _profiled(self, request, client_address) -> None:
    # the thread's own CPU time: wall time would charge the simulator for waiting on the socket,
    # on the store's lock and on other processes of a busy machine
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        _original(self, request, client_address)
    finally:
        profile.disable()
        with _lock:
            _stats.append(pstats.Stats(profile))


def main() -> int:
    socketserver.ThreadingMixIn.process_request_thread = _profiled
    from exchange_sim.__main__ import main as simulator_main

    try:
        return simulator_main(sys.argv[1:])
    finally:
        with _lock:
            if _stats:
                total = _stats[0]
                for more in _stats[1:]:
                    total.add(more)
                total.dump_stats(os.path.join(os.environ["BENCH_PROFILE"], "simulator.prof"))


if __name__ == "__main__":
    sys.exit(main())
