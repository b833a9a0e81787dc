# Two entry points for a fresh Linux machine: `make run` (the app) and `make test` (the tests).
# Both create .venv in the checkout and install everything first (system packages via apt when
# run as root, otherwise they are listed).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup system-packages

run: setup
	$(VENV)/bin/hulu-workstation --demo

test: setup system-packages
	bash installer/run_tests.sh

setup: $(STAMP)

$(STAMP): pyproject.toml installer/setup_venv.sh installer/transformers-floor.txt
	bash installer/setup_venv.sh $(VENV)
	touch $(STAMP)

system-packages:
	bash installer/system_packages.sh
