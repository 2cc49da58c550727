#!/bin/sh
# Creates the Home Assistant venv the end-to-end test uses (tests/test_hass_e2e.py).
# Outside the repo: it is ~670 MB. homeassistant 2024.3.3 is the newest release for Python 3.11;
# the pins below are the ones it would otherwise pip-install at start-up (it runs with --skip-pip,
# offline), frontend included: without it HA falls into recovery mode and mqtt_statestream is off.
# Usage: tests/support/hass_setup.sh [VENV_DIR]   (default: $CAMD_HASS_VENV or ~/.cache/camd-hass/venv)
set -eu
VENV="${1:-${CAMD_HASS_VENV:-$HOME/.cache/camd-hass/venv}}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ -x "$VENV/bin/hass" ] && [ -f "$VENV/.camd-ready" ]; then
    echo "Home Assistant venv ready: $VENV"; exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    homeassistant==2024.3.3 paho-mqtt==1.6.1 janus==1.0.0 Pillow==10.2.0 \
    psutil-home-assistant==0.0.1 securetar==2024.2.1 home-assistant-frontend==20240307.0 \
    SQLAlchemy==2.0.27 fnv-hash-fast==0.5.0 hass-nabucasa==0.78.0 numpy
touch "$VENV/.camd-ready"
echo "Home Assistant venv ready: $VENV"
