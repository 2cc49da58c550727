"""The identity extractors, loaded: body appearance, clothing colour, vehicle appearance, face and pose."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from camd.config.schema import Config
from camd.identity.body_model import BodyModel
from camd.identity.evidence.body import BodyEmbedder
from camd.identity.evidence.colour import ClothingColourDescriptor
from camd.identity.evidence.face import FaceEmbedder
from camd.identity.evidence.pose import MoveNetPose
from camd.identity.evidence.vehicle import VehicleAppearanceEmbedder
from camd.identity.model_files import IdentityModelPaths


@dataclass
class Extractors:
    """The loaded extractors; None where a modality is disabled. One lock: LiteRT and dlib are not
    thread-safe, and two cameras embedding at once would only fight for the same 2 cores."""

    body: BodyEmbedder | None
    colour: ClothingColourDescriptor | None
    vehicle: VehicleAppearanceEmbedder | None
    face: FaceEmbedder | None
    pose: MoveNetPose | None
    lock: threading.Lock

    @classmethod
    def load(cls, config: Config, body: BodyModel) -> Extractors:
        """`body`: the body model in use (camd/identity/body_model.py resolves it, fallback included)."""
        ident = config.identity
        paths = IdentityModelPaths.prepare(config.models_path)
        threads = ident.threads
        vehicle = VehicleAppearanceEmbedder(paths.appearance_onnx, threads=threads) if ident.vehicle else None
        return cls(
            body=body.load(threads=threads) if ident.body else None,
            colour=ClothingColourDescriptor() if ident.body else None,
            vehicle=vehicle,
            face=FaceEmbedder(paths.face_shape, paths.face_resnet) if ident.face else None,
            pose=MoveNetPose(paths.movenet, threads=threads) if ident.gait else None,
            lock=threading.Lock(),
        )
