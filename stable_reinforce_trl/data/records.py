"""Pairs as jsonl records (the `pairs` format, which `load_pairs` reads back), and images as bytes.

In-memory or embedded images cannot go into a JSON line, so they are written once to a media
folder beside the jsonl and the record holds their paths. Every path written is absolute, so the
file reads the same from any working folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

from PIL import Image as PILImage

from .pairs import ImageRef, PreferencePair

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}


def pair_key(pair: PreferencePair) -> str:
    """A stable key for resuming: ids alone may repeat (benchmarks group pairs by prompt id)."""
    text = "\x00".join((pair.id, pair.question, pair.chosen, pair.rejected))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def image_bytes(ref: ImageRef) -> tuple[bytes, str]:
    """(bytes, mime type) of an image reference: a path, a `{"bytes", "path"}` dict, or a PIL image."""
    if isinstance(ref, str):
        mime = _MIME.get(os.path.splitext(ref)[1].lower())
        data = Path(ref).read_bytes()
        return (data, mime) if mime else _as_png(PILImage.open(io.BytesIO(data)))
    if isinstance(ref, dict):
        if ref.get("bytes"):
            image = PILImage.open(io.BytesIO(ref["bytes"]))
            mime = PILImage.MIME.get(image.format or "")
            return (ref["bytes"], mime) if mime in _MIME.values() else _as_png(image)
        return image_bytes(ref["path"])
    return _as_png(ref)


def _as_png(image: PILImage.Image) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def store_image(ref: ImageRef, media_dir: Path | None, name: str) -> str:
    """An absolute path for the image: its own, or a file `name.<ext>` written into `media_dir`."""
    if isinstance(ref, str):
        return os.path.abspath(ref)
    if isinstance(ref, dict) and not ref.get("bytes"):
        return os.path.abspath(ref["path"])
    if media_dir is None:
        raise ValueError("this pair holds in-memory images: give a media folder to write them to")
    media_dir.mkdir(parents=True, exist_ok=True)
    data, mime = image_bytes(ref)
    path = media_dir / f"{name}.{mime.split('/')[1]}"
    if not path.exists():
        path.write_bytes(data)
    return str(path.absolute())


def pair_to_record(pair: PreferencePair, media_dir: str | os.PathLike | None = None) -> dict:
    """One `pairs`-format line: id, prompt, chosen, rejected, images (paths), video, category, source,
    and the annotation fields when the pair has been annotated."""
    media = Path(media_dir) if media_dir is not None else None
    stem = re.sub(r"[^\w.-]", "_", pair.id)[:80] + "-" + pair_key(pair)[:8]
    record = {
        "id": pair.id,
        "prompt": pair.question,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "images": [store_image(ref, media, f"{stem}-{i}") for i, ref in enumerate(pair.images)],
        "category": pair.category,
        "source": pair.source,
    }
    if pair.video is not None:
        record["video"] = [store_image(ref, media, f"{stem}-frame{i}") for i, ref in enumerate(pair.video)]
    if pair.attempts is not None or pair.reasoning is not None:
        record.update(reasoning=pair.reasoning, reasoning_label=pair.reasoning_label, attempts=pair.attempts,
                      failed=pair.failed)
    return record
