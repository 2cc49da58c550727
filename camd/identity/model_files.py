"""Where the identity models live once prepared from the manifest (models/manifest.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from camd.assets import asset_path, ensure_asset

# A short name per file -> (asset id, file name in that asset): the identity code and its tests use these.
FILES: dict[str, tuple[str, str]] = {
    "appearance_onnx": ("body_appearance_onnx", "mobilenetv2_features14_256x128.onnx"),
    "mobilenet_v2_weights": ("mobilenet_v2_imagenet", "mobilenet_v2-b0353104.pth"),
    "face_shape_5": ("dlib_face", "shape_predictor_5_face_landmarks.dat"),
    "face_resnet": ("dlib_face", "dlib_face_recognition_resnet_model_v1.dat"),
    "movenet": ("movenet_lightning", "movenet_lightning.tflite"),
    "ssd_graph": ("ssd_mobilenet_v2_coco", "frozen_inference_graph.pb"),
}


def model_file(models_dir: Path, key: str, prepare: bool = True) -> Path:
    """The prepared file for `key` (one of FILES), preparing its asset first unless prepare=False."""
    asset_id, name = FILES[key]
    if prepare:
        ensure_asset(asset_id, Path(models_dir))
    return asset_path(asset_id, name, Path(models_dir))


def face_photo(models_dir: Path, name: str) -> Path:
    """One of the face_recognition 1.3.0 test photos (the `face_photos` media asset)."""
    ensure_asset("face_photos", Path(models_dir))
    return asset_path("face_photos", name, Path(models_dir))


@dataclass(frozen=True, slots=True)
class IdentityModelPaths:
    appearance_onnx: Path
    face_shape: Path
    face_resnet: Path
    movenet: Path

    @classmethod
    def prepare(cls, models_dir: Path) -> IdentityModelPaths:
        return cls(
            appearance_onnx=model_file(models_dir, "appearance_onnx"),
            face_shape=model_file(models_dir, "face_shape_5"),
            face_resnet=model_file(models_dir, "face_resnet"),
            movenet=model_file(models_dir, "movenet"),
        )
