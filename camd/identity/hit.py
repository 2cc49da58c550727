"""What a memory query returns: one stored prototype (or sighting) with its vectors for re-scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Hit:
    """A stored prototype (or sighting) that a query found, with its vectors for re-scoring."""

    key: str
    person_id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray]
