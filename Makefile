# Two commands matter: `make run` (the product on its embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Two test processes (pytest-xdist): the suite allows it, and CI's two cores finish in half the time.
PYTEST_ARGS ?= -n 2

.PHONY: run test venv lint migrate demo clean

# requirements-dev.txt includes requirements-demo.txt (simulator, honcho), which includes requirements.txt.
$(STAMP): requirements.txt requirements-demo.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable

demo: migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo

# One command: web server, one qcluster, the push listener and exchange_sim (Procfile), all
# stopped together on Ctrl-C. SQLite allows only one cluster: keep `worker` at one process.
# The console URL and the login are printed by `demo_banner` once everything listens.
run: demo
	WEB_HOST=$(HOST) WEB_PORT=$(PORT) $(VENV)/bin/honcho start -f Procfile

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles
