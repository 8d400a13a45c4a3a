# Fast under load: `make lab` starts the course, `make test` runs every test.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test course clean-notebooks

# (Re)create the virtual environment whenever the dependency list changes.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@# Prometheus + promtool (Debian's prometheus package) for notebook 12's live part; best effort outside CI.
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >/dev/null 2>&1 \
	      || echo "prometheus could not be installed: notebook 12 will skip its live part"; \
	  else echo "prometheus is not installed (as root: apt-get install prometheus): notebook 12 will skip its live part"; fi
	touch $(STAMP)

# JupyterLab on notebooks/ (labkit/lab.py holds the command line; it adds --allow-root only as root).
lab: $(STAMP)
	$(VENV)/bin/labkit lab

# One pytest session: the unit tests, then every notebook executed once in fast mode by nbval (--nbval-lax:
# every cell must run, `# NBVAL_CHECK_OUTPUT` cells are compared); conftest.py prints a per-notebook summary.
test: $(STAMP)
	LABKIT_FAST=1 $(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env tests notebooks/[0-9]*.ipynb

# Execute every notebook in full mode; executed copies land in notebooks/executed/ (not in git), with one HTML
# report: notebooks/executed/report/course_report.html (each notebook as HTML, its final table, date, hardware).
course: $(STAMP)
	$(VENV)/bin/labkit course --full --report

clean-notebooks:
	$(VENV)/bin/labkit strip notebooks
