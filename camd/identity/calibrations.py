"""The measured thresholds of each body model (camd/eval/calibrate.py measures them; docs/identity.md
has the tables). A body model without its own calibration (the user's own OSNet weights) uses OSNet
x0.25's, and camd says so: re-measure on your own footage."""

from __future__ import annotations

import logging

from camd.identity.body_compare import BodyCalibration
from camd.identity.body_model import BodyModel

log = logging.getLogger(__name__)

# Measured by `python -m camd.eval.calibrate` on reid/train (62 people, 2 cameras, 4-crop tracks): the
# mean of two folds of 31 people, each fold's impostor tail fitted on its own people; docs/identity.md
# gives each fold's figures on the other fold's people.
REID_TRAIN = "reid/train, two folds of 31 people (camd/eval/calibrate.py, 2026-12-07)"

OSNET_X0_25_MSMT17 = BodyCalibration(
    name="osnet_x0_25_msmt17",
    impostor={
        ("raw", "same"): (0.6318, 0.08), ("raw", "cross"): (0.5773, 0.0726), ("raw", "ir"): (0.6556, 0.079),
        ("centred", "same"): (-0.0809, 0.2213), ("centred", "cross"): (-0.0598, 0.1934),
        ("centred", "ir"): (-0.0705, 0.2472),
    },
    slope={"raw": 0.058, "centred": 0.115},
    stranger_margin={"raw": 0.04, "centred": 0.08},
    colour_half={"same": 1.0, "cross": 0.5, "ir": 0.0},
    clothing_colour={"same": 0.0, "cross": 0.0, "ir": 0.0},
    measured_on=REID_TRAIN,
)

MOBILENETV2 = BodyCalibration(
    name="mobilenetv2",
    impostor={
        ("raw", "same"): (0.706, 0.0576), ("raw", "cross"): (0.5635, 0.0553), ("raw", "ir"): (0.5635, 0.0553),
        ("centred", "same"): (0.0216, 0.1702), ("centred", "cross"): (0.0289, 0.1179),
        ("centred", "ir"): (0.0289, 0.1179),
    },
    slope={"raw": 0.092, "centred": 0.098},
    stranger_margin={"raw": 0.08, "centred": 0.20},
    colour_half=None,
    clothing_colour={"same": 0.1, "cross": 0.1, "ir": 0.1},
    measured_on=REID_TRAIN,
)


def calibration_for(model: BodyModel) -> BodyCalibration:
    if model.calibration is not None:  # an adapted network's, re-derived on this installation (camd adapt)
        return model.calibration
    if model.kind == "mobilenetv2":
        return MOBILENETV2
    return OSNET_X0_25_MSMT17
