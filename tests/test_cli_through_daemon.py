"""`camd enroll / people / forget` while the daemon runs: the CLI cannot open the embedded store
(the daemon holds it), so it goes through the daemon's control API to the real identity engine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from camd.config.loader import load_config
from tests.support.service import free_port, running_daemon, wait_for

REPO = Path(__file__).resolve().parents[1]


def camd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camd.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180)


def test_enroll_list_and_forget_through_the_running_daemon(tmp_path: Path, models_dir: Path) -> None:
    photos = tmp_path / "obama"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(models_dir / "face_photos" / name, photos / name)
    config_file = tmp_path / "camd.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path / 'state'}\nmodels_dir: {models_dir}\nmqtt: {{enabled: false}}\n"
        f"api: {{port: {free_port()}}}\n"
        f"cameras:\n  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true, "
        "realtime: true}\n"
    )
    with running_daemon(load_config(config_file)) as daemon:
        wait_for(lambda: daemon.pipelines["street"].stats.frames >= 3, "frames from the camera")
        enrolled = camd("enroll", "barack", "--role", "family", "--photos", str(photos), "--config",
                        str(config_file))
        assert enrolled.returncode == 0, enrolled.stderr
        assert "enrolled barack" in enrolled.stdout and "face 2" in enrolled.stdout
        assert daemon.identity is not None
        assert [p["person_id"] for p in daemon.identity.memory.people()] == ["barack"]

        listed = camd("people", "list", "--config", str(config_file))
        assert listed.returncode == 0 and listed.stdout.startswith("barack"), listed.stderr

        # Re-embedding the kept crops runs in the daemon, which holds the store and the body model.
        memory = daemon.identity.memory
        before = {h.key: h.vectors["body"] for h in memory.prototypes("barack") if "body" in h.vectors}
        again = camd("people", "reembed", "--json", "--config", str(config_file))
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["prototypes"] == len(before) >= 1 and report["people"] == ["barack"]
        after = {h.key: h.vectors["body"] for h in memory.prototypes("barack") if "body" in h.vectors}
        assert after.keys() == before.keys()
        # The same model on the kept crops (JPEG, at most 256 px tall): measured 0.985-0.987 to the originals.
        assert all(float(np.dot(after[k], before[k])) > 0.97 for k in after)

        unknown = camd("people", "show", "michelle", "--config", str(config_file))
        assert unknown.returncode == 1 and "michelle" in unknown.stderr

        # A photo is no clip: the daemon receives it, finds no track in it, and says so.
        from_clip = camd("enroll", "x", "--role", "visitor", "--clip", str(photos / "obama.jpg"), "--config",
                         str(config_file))
        assert from_clip.returncode == 1 and "through the running daemon" in from_clip.stderr
        assert "no person was tracked" in from_clip.stderr or "no frame could be decoded" in from_clip.stderr

        forgot = camd("forget", "barack", "--config", str(config_file))
        assert forgot.returncode == 0, forgot.stderr
        assert daemon.identity.memory.people() == []
