#!/usr/bin/env bash
# Simulator fidelity: exchangelib 5.6.0's own test suite (its authors run it against real Exchange),
# run against a fresh exchange_sim per subset by ../shared/exchangelib-tests/run.sh.
#
#   bench/fidelity.sh [pytest args...]        (SUBSETS="tests/test_folder.py ..." narrows the run)
#
# Prints each subset's pytest summary, then one JSON line: passed / failed / errors / skipped per
# subset (keyed by the test file's name) and the totals, with the pass share of the tests that ran.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared"
runner="$shared/exchangelib-tests/run.sh"
if [ ! -f "$runner" ]; then
  echo "bench/fidelity.sh: $runner is missing (the shared exchangelib test suite sits beside the project)" >&2
  exit 2
fi
py="$root/.venv/bin/python"
if ! "$py" -c 'import exchangelib, yaml, requests_mock, psutil, pytest' 2>/dev/null; then
  echo "bench/fidelity.sh: $py lacks exchangelib, pyyaml, requests_mock, psutil or pytest (make venv)" >&2
  exit 2
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cd "$root"
bash "$runner" "$py" "$@" | tee "$out"
"$py" - "$out" <<'PY'
import json
import re
import sys
from pathlib import Path

subsets = {}
for line in Path(sys.argv[1]).read_text().splitlines():
    name, sep, summary = line.partition(": ")
    if not sep or not name.endswith(".py"):
        continue
    counts = {key: 0 for key in ("passed", "failed", "errors", "skipped")}
    for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary):
        counts["errors" if word.startswith("error") else word] += int(number)
    subsets[Path(name).stem] = counts
totals = {key: sum(s[key] for s in subsets.values()) for key in ("passed", "failed", "errors", "skipped")}
ran = totals["passed"] + totals["failed"] + totals["errors"]
totals["pass_share"] = round(totals["passed"] / ran, 3) if ran else 0.0
print(json.dumps({"subsets": subsets, "totals": totals}))
PY
