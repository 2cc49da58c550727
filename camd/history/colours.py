"""What someone wore, in words: named colours of the upper and lower body from the clothing colour
descriptor every person sighting keeps (camd/identity/evidence/colour.py).

The descriptor is the square root of two HSV histograms (upper, lower band), each 8 hues x 4
saturations of coloured pixels plus 4 brightness bins of grey ones, concatenated and L2-normalised.
Squaring it gives the histograms back (for a track: roughly, since a track keeps the mean of its
crops' descriptors). Each bin is given a colour name below; a band "is" a colour when that name holds
at least MIN_SHARE of its pixels. Hue bins are 45 degrees wide, so the names are coarse on purpose:
red, brown (low-saturation reds: tan, beige, skin), yellow, green, blue, purple, and black / grey /
white for unsaturated pixels. Under night IR everything is grey.
"""

from __future__ import annotations

import numpy as np

HUE_BINS, SAT_BINS, VAL_BINS = 8, 4, 4
BAND = HUE_BINS * SAT_BINS + VAL_BINS  # 36 values per band
DIM = 2 * BAND
# A band is called a colour when at least this share of its pixels has it: clothing fills about half
# of a band (the rest is background, arms, hair), and a two-coloured jacket splits its half.
MIN_SHARE = 0.2

# Hue bin -> name (OpenCV hue 0..180 in 8 bins: 0-45 degrees red/orange, 45-90 yellow, 90-180 green,
# 180-270 blue, 270-315 purple, 315-360 crimson).
_HUE_NAMES = ("red", "yellow", "green", "green", "blue", "blue", "purple", "red")
_GREY_NAMES = ("black", "grey", "grey", "white")
NAMES: tuple[str, ...] = ("red", "brown", "yellow", "green", "blue", "purple", "black", "grey", "white")

UPPER_WORDS = frozenset({
    "top", "shirt", "t-shirt", "tshirt", "jacket", "coat", "jumper", "sweater", "hoodie", "hood", "blouse",
    "upper", "vest", "cardigan", "fleece", "anorak", "dress",
})  # fmt: skip
LOWER_WORDS = frozenset({
    "trousers", "pants", "jeans", "skirt", "shorts", "bottom", "bottoms", "lower", "leggings", "joggers",
    "chinos",
})  # fmt: skip
SYNONYMS = {
    "gray": "grey", "navy": "blue", "dark": "black", "orange": "red", "pink": "red", "maroon": "red",
    "beige": "brown", "tan": "brown", "violet": "purple", "silver": "grey",
}  # fmt: skip


def _bin_names() -> list[str]:
    names = []
    for hue in range(HUE_BINS):
        for sat in range(SAT_BINS):
            # Weakly saturated reds are tan, beige and skin, not red clothing.
            names.append("brown" if _HUE_NAMES[hue] == "red" and sat == 0 else _HUE_NAMES[hue])
    return names + list(_GREY_NAMES)


_BIN_NAMES = _bin_names()
# (len(NAMES), BAND): sums a band's bins into named shares with one matrix product.
_TO_NAMES = np.array([[1.0 if b == name else 0.0 for b in _BIN_NAMES] for name in NAMES], dtype=np.float32)


def shares(colour_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower): per row, the share of each of NAMES in that band (rows sum to 1, or 0 for
    an empty band). `colour_vectors`: (n, 72) descriptors."""
    rows = np.asarray(colour_vectors, dtype=np.float32).reshape(-1, DIM)
    out = []
    for band in (rows[:, :BAND], rows[:, BAND:]):
        histogram = np.square(band)
        total = histogram.sum(axis=1, keepdims=True)
        histogram = np.divide(histogram, total, out=np.zeros_like(histogram), where=total > 0)
        out.append(histogram @ _TO_NAMES.T)
    return out[0], out[1]


def describe(colour_vector: np.ndarray, top: int = 2) -> dict[str, list[list[float | str]]]:
    """{"upper": [[name, share], ...], "lower": [...]}: the main named colours of one sighting."""
    upper, lower = shares(colour_vector)
    out: dict[str, list[list[float | str]]] = {}
    for part, row in (("upper", upper[0]), ("lower", lower[0])):
        order = np.argsort(-row)[:top]
        out[part] = [[NAMES[i], round(float(row[i]), 2)] for i in order if row[i] >= MIN_SHARE / 2]
    return out


def parse_wearing(text: str) -> tuple[str, str]:
    """("upper" | "lower", colour name) from "red top", "black trousers", "blue jeans"; ValueError
    saying what is understood otherwise."""
    words = text.lower().replace("-", " ").split()
    colours = [SYNONYMS.get(w, w) for w in words if SYNONYMS.get(w, w) in NAMES]
    garments = [w for w in words if w in UPPER_WORDS or w in LOWER_WORDS or w.rstrip("s") in UPPER_WORDS]
    if text.lower().replace(" ", "") in ("tshirt", "t-shirt"):
        garments = ["top"]
    if len(colours) != 1 or len(garments) != 1:
        raise ValueError(
            f'cannot read {text!r} as clothing: say a colour and a garment, e.g. "red top", '
            f'"black trousers", "blue jeans". Colours: {", ".join(NAMES)}; tops: top, shirt, jacket, '
            "coat, jumper, hoodie...; bottoms: trousers, jeans, skirt, shorts..."
        )
    garment = garments[0]
    part = "upper" if garment in UPPER_WORDS or garment.rstrip("s") in UPPER_WORDS else "lower"
    return part, colours[0]


def check_colour(name: str) -> str:
    colour = SYNONYMS.get(name.lower().strip(), name.lower().strip())
    if colour not in NAMES:
        raise ValueError(f"unknown colour {name!r}: one of {', '.join(NAMES)}")
    return colour
