"""A contact sheet: search results as one self-contained HTML page of crops, each with its time,
camera and decision. Crops are embedded (data: URIs), so the page opens anywhere, the daemon's crop
folder (owner-only) need not be readable by the browser, and the file can be moved as one. It holds
biometric crops: it is written owner-only."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from camd.private import write_private

_STYLE = """
body{font:14px system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:18px;margin:0 0 4px}p.q{color:#555;margin:0 0 12px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:150px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
figure img{display:block;width:150px;height:200px;object-fit:contain;background:#eee}
figure .none{width:150px;height:200px;display:flex;align-items:center;justify-content:center;
  background:#eee;color:#888}
figcaption{font-size:12px;line-height:1.35;margin-top:4px;word-break:break-all}
.family{color:#17692f}.visitor{color:#1f4fa3}.stranger,.unknown_vehicle{color:#a3261f}
"""


def _caption(row: dict[str, Any]) -> str:
    who = row.get("who") or "undecided"
    cls = row.get("identity_class") or ""
    confidence = row.get("confidence")
    sure = f" {confidence:.2f}" if isinstance(confidence, int | float) else ""
    score = f"<br>score {row['score']:.3f}" if isinstance(row.get("score"), int | float) else ""
    wore = row.get("wore") or {}
    clothes = " / ".join(
        ", ".join(str(name) for name, _ in wore.get(part) or []) or "?" for part in ("upper", "lower")
    ) if wore else ""  # fmt: skip
    return (
        f'<b class="{escape(cls)}">{escape(str(who))}</b> {escape(cls.replace("_", " "))}{sure}<br>'
        f"{escape(str(row.get('time') or ''))}<br>{escape(str(row.get('camera') or ''))}"
        f"{'<br>' + escape(clothes) if clothes else ''}{score}"
        f"<br><small>{escape(str(row.get('sighting_id') or ''))}</small>"
    )


def _image(row: dict[str, Any]) -> str:
    data = row.get("crop_jpeg")
    if not data:
        crop = row.get("crop")
        if crop and Path(crop).is_file():
            data = base64.b64encode(Path(crop).read_bytes()).decode()
    if not data:
        return '<div class="none">no crop</div>'
    alt = escape(f"{row.get('who') or 'undecided'} at {row.get('camera')}")
    return f'<img src="data:image/jpeg;base64,{data}" alt="{alt}">'


def render(answer: dict[str, Any], title: str = "camd search") -> str:
    """The page for a search answer (`search`'s dict; rows may carry `crop_jpeg`)."""
    rows = answer.get("results") or []
    asked = {k: v for k, v in (answer.get("query") or {}).items() if v not in (None, (), [], 50)}
    query = ", ".join(f"{k} {v}" for k, v in asked.items()) or "everything"
    cards = "\n".join(f"<figure>{_image(r)}<figcaption>{_caption(r)}</figcaption></figure>" for r in rows)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}: {len(rows)} sighting{'s' if len(rows) != 1 else ''}</h1>"
        f'<p class="q">{escape(query)}</p><div class="grid">\n{cards}\n</div></body></html>\n'
    )


def write_sheet(answer: dict[str, Any], path: Path, title: str = "camd search") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, render(answer, title).encode())
    return path
