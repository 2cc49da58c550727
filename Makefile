# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Pin torch in the same pip command whenever it is installed (a looser pin pulls GBs of CUDA).
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: venv models demo test lint bench clean system-deps hass-venv

# Debian packages some tests use: GStreamer's RTSP server (a real RTSP camera), Mosquitto
# (a broker a test can stop and restart) and headless Chromium with its WebDriver (the search
# contact sheet opened in a real browser). Installed when missing and apt is usable; otherwise
# those tests skip and say which packages they need.
SYSTEM_DEPS := gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad mosquitto chromium chromium-driver

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[test,prepare,adapt]' 'torch==2.13.0'
	touch $@

# camd's default body model (OSNet) downloads its weights; beside the repo, ../shared/models holds the
# same file (checked against the same sha256), so the demo and the tests need no download.
MODELS_FROM := $(if $(wildcard ../shared/models/osnet_x0_25_msmt17.pth),--from ../shared/models)

models: venv
	$(BIN)/camd models prepare $(MODELS_FROM)

demo: models
	$(BIN)/camd demo

lint: venv
	$(BIN)/ruff check .

system-deps:
	@missing=$$(for p in $(SYSTEM_DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
			|| echo "warning: could not install $$missing; the tests that need them will skip"; \
	else echo "note: $$missing not installed (needs root and apt); the tests that need them will skip"; fi

# Home Assistant 2024.3.3 in its own venv (~3 min once, ~670 MB, cached in ~/.cache/camd-hass)
# for the end-to-end discovery test; that test skips with a message when the venv is absent.
hass-venv:
	-bash tests/support/hass_setup.sh

test: venv lint system-deps hass-venv
	$(BIN)/camd models prepare $(MODELS_FROM)
	$(BIN)/python -m pytest -q

bench: models
	$(BIN)/camd bench $(or $(SOURCE),demo)

clean:
	rm -rf $(VENV) var build *.egg-info
