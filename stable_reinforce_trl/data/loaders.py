"""Loaders: every supported source read into `PreferencePair`s, then into judge datasets.

Formats (`format=`, "auto" guesses from the first row's keys):
- `r1-reward`: the released R1-Reward RL jsonl (`message` chat JSON holding the filled judge prompt
  and an image path, `answer` like `["<answer>2</answer>"]`).
- `pairs`: `{id, prompt, chosen, rejected, image}` jsonl (VL-RewardBench / MM-RLHF-RewardBench
  exports, and this package's annotation files); `image` may be a folder of video frames.
- `vl-rewardbench`: `id, query, response[2], image (embedded), human_ranking, query_source`.
- `multimodal-rewardbench`: `ID, Text, Image (path), Output1, Output2, Better, Category`.
- `judge`: judge rows, what `stable-reinforce convert` and `select-hard` write (`prompt` or SFT `messages`
  holding the filled judge prompt, `images`, `videos`, `label`), read back into pairs (for `eval`).
- `columns`: any jsonl or HF dataset with a user-given column mapping.

A source may also be `synthetic:N[:difficulty[:seed]]`: the built-in synthetic task's pairs (`data.synthetic`),
the same as the recipes' training split of that name.

Relative image paths are resolved against `image_root` (default: the data file's folder), never
against the working folder, and come out absolute: whatever a command writes from the pairs can be
read from any folder. Images stay paths (or embedded bytes) until a row is read from the dataset:
`datasets.Image` loads lazily.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import datasets

from ..prompts import parse_verdict
from .pairs import PreferencePair, judge_dataset
from .synthetic import SYNTHETIC_PREFIX, make_synthetic_pairs, parse_synthetic
from .validation import (
    IMAGE_CHECKS,
    InvalidRowError,
    InvalidRowsError,
    OptionError,
    RowContext,
    SkipReport,
    SourceNotFoundError,
    check_pair,
)

FORMATS = ("r1-reward", "pairs", "vl-rewardbench", "multimodal-rewardbench", "judge", "columns")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PAIR_FIELDS = ("id", "question", "chosen", "rejected", "images", "video", "category", "source")
# Keys a `columns` mapping may name: either chosen/rejected, or response1/response2 plus label.
MAPPING_KEYS = (*PAIR_FIELDS, "response1", "response2", "label")

Source = str | os.PathLike | datasets.Dataset


# ---------------------------------------------------------------------------------------------- rows


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line {number}", exc


def _dataset_rows(ds: datasets.Dataset) -> Iterator[tuple[str, Any]]:
    # Undecoded images: embedded bytes stay bytes (decoded later, lazily, by the judge dataset).
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.Image):
            ds = ds.cast_column(name, datasets.List(datasets.Image(decode=False)))
    for index, row in enumerate(ds):
        yield f"row {index}", row


def iter_rows(source: Source, split: str = "train") -> tuple[str, Path | None, Iterator[tuple[str, Any]]]:
    """(name for messages, folder relative paths start from, rows as (where, dict-or-parse-error))."""
    if isinstance(source, datasets.Dataset):
        return "<dataset>", None, _dataset_rows(source)
    path = Path(source)
    if path.is_dir():
        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise SourceNotFoundError(f"{path}: a folder, but not one written by save_to_disk (no dataset_info.json). "
                                      "Fix: give the data file inside it, or the folder `convert` wrote") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise OptionError(f"{path} holds the splits {list(ds)}, not {split!r}. Fix: pass --split")
            ds = ds[split]
        return str(path), path, _dataset_rows(ds)
    if path.suffix == ".parquet":
        return str(path), path.parent, _dataset_rows(datasets.Dataset.from_parquet(str(path)))
    if path.suffix == ".json" and path.is_file():
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RowContext(str(path), "the whole file").error(
                "(file)", "malformed file", str(exc), "give a JSON list of row objects (or use .jsonl, one per line)"
            ) from None
        if not isinstance(rows, list):
            raise RowContext(str(path), "the whole file").error(
                "(file)", "malformed file", f"a JSON {type(rows).__name__}, not a list", "give a JSON list of rows")
        return str(path), path.parent, ((f"row {i}", r) for i, r in enumerate(rows))
    if path.is_file():
        return str(path), path.parent, _jsonl_rows(path)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):  # a Hub dataset name
        try:
            ds = datasets.load_dataset(str(source), split=split)
        except Exception as exc:  # offline, unknown name, missing split: datasets raises many types
            raise SourceNotFoundError(
                f"{source}: no such local file or folder, and not loadable as a Hub dataset "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Fix: check the path "
                f"(relative paths start from the working folder, {os.getcwd()}) or the dataset name and split"
            ) from None
        return str(source), None, _dataset_rows(ds)
    raise SourceNotFoundError(f"{source}: no such file, folder or Hub dataset name. Fix: check the path (relative "
                              f"paths start from the working folder, {os.getcwd()})")


# -------------------------------------------------------------------------------------------- images


class _Media:
    """Resolves image references: relative paths against the root, frame folders into sampled frames."""

    def __init__(self, root: Path | None, num_frames: int):
        self.root, self.num_frames = root, num_frames

    def path(self, value: str) -> str:
        if self.root is not None and not os.path.isabs(value):
            value = os.path.join(self.root, value)
        return os.path.abspath(value)

    def image(self, value: Any, ctx: RowContext, field_name: str):
        if isinstance(value, str) and value:
            return self.path(value)
        if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
            return value if value.get("bytes") else self.path(value["path"])
        if hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image
            return value
        raise ctx.error(field_name, "missing image", f"no image in {str(value)[:80]!r}",
                        "give an image path (or embedded image bytes)")

    def images(self, value: Any, ctx: RowContext, field_name: str) -> tuple[list, list | None]:
        """(images, video frames or None). A folder is a video: `num_frames` frames, evenly spaced."""
        if value is None:
            raise ctx.error(field_name, "missing image", "the field is empty", "give an image path")
        if isinstance(value, str) and os.path.isdir(self.path(value)):
            return [], self.frames(self.path(value), ctx, field_name)
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ctx.error(field_name, "missing image", "empty image list", "give at least one image path")
        return [self.image(v, ctx, field_name) for v in values], None

    def frames(self, folder: str, ctx: RowContext, field_name: str) -> list[str]:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(FRAME_SUFFIXES))
        if not names:
            raise ctx.error(field_name, "missing image", f"video folder {folder} holds no frames {FRAME_SUFFIXES}",
                            "point at a folder of frame images")
        k = min(self.num_frames, len(names))
        picks = [round(i * (len(names) - 1) / (k - 1)) for i in range(k)] if k > 1 else [len(names) // 2]
        return [os.path.join(folder, names[i]) for i in picks]


# ------------------------------------------------------------------------------------------- formats


def _get(row: dict, key: str, ctx: RowContext, fix: str | None = None):
    if key not in row or row[key] is None:
        raise ctx.error(key, "missing field", f"no '{key}' in a row with keys {sorted(row)[:12]}",
                        fix or f"add '{key}' or choose the right format / column mapping")
    return row[key]


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _label(value: Any, ctx: RowContext, field_name: str, allowed: dict) -> str:
    key = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(key, (str, int, tuple)) or key not in allowed:  # lists and dicts are never labels
        raise ctx.error(field_name, "unknown label", f"{value!r} is not one of {sorted(map(str, allowed))}",
                        "use one of the listed values")
    return allowed[key]


_JUDGE_PARTS = re.compile(
    r"\[Question\]:[ \t]*\n(.*?)\s*#+ \[Response 1\]:[ \t]*\n(.*?)\s*"
    r"#+ \[Response 2\]:[ \t]*\n(.*?)\s*#+ \*\*Output Format",
    re.DOTALL,
)


def _r1_reward(row: dict, ctx: RowContext, media: _Media) -> PreferencePair:
    raw = _get(row, "message", ctx)
    try:
        chat = json.loads(raw) if isinstance(raw, str) else raw
        user = next(m for m in chat if m.get("role") == "user")
    except (json.JSONDecodeError, StopIteration, AttributeError, TypeError) as exc:
        raise ctx.error("message", "malformed field", f"not a JSON chat with a user turn ({exc})",
                        "give the chat as a JSON list of {role, content} messages") from None
    content = user.get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    text = "".join(p.get("text") or "" for p in parts if p.get("type") == "text")
    images = [p.get("image") or p.get("image_url") for p in parts if p.get("type") in ("image", "image_url")]
    images = [i["url"] if isinstance(i, dict) and "url" in i else i for i in images]
    found = _JUDGE_PARTS.search(text)
    if not found:
        raise ctx.error("message", "malformed field", "the user text is not the filled judge prompt",
                        "the text must hold '[Question]:', '[Response 1]:', '[Response 2]:' and '**Output Format'")
    question, answer1, answer2 = (s.strip() for s in found.groups())
    answer = _get(row, "answer", ctx)
    verdict = parse_verdict(answer[0] if isinstance(answer, list) and len(answer) == 1 else str(answer))
    label = _label(verdict, ctx, "answer", {1: "1", 2: "2"})
    chosen, rejected = (answer1, answer2) if label == "1" else (answer2, answer1)
    image_value = images if images else row.get("image")
    pics, video = media.images(image_value, ctx, "message" if images else "image")
    return PreferencePair(
        id=str(row.get("id", ctx.where)), question=question or _text(row.get("question")), chosen=chosen,
        rejected=rejected, images=pics, video=video, category=row.get("category") or "", source="r1-reward",
    )


def _pairs(row: dict, ctx: RowContext, media: _Media) -> PreferencePair:
    if row.get("video"):  # this package's own records: an explicit list of frames (or a folder)
        frames = row["video"]
        if isinstance(frames, list):
            pics, video = [], [media.path(f) for f in frames]
        else:
            pics, video = media.images(frames, ctx, "video")
    elif row.get("images") == [] and not row.get("image"):  # a text-only record, said explicitly
        pics, video = [], None
    else:
        key = "images" if row.get("images") and not row.get("image") else "image"
        pics, video = media.images(_get(row, key, ctx), ctx, key)
    attempts = row.get("attempts")
    return PreferencePair(
        id=str(_get(row, "id", ctx)), question=_text(_get(row, "prompt", ctx)), chosen=_text(_get(row, "chosen", ctx)),
        rejected=_text(_get(row, "rejected", ctx)), images=pics, video=video, category=row.get("category") or "",
        source=row.get("source") or "pairs", reasoning=row.get("reasoning"),
        reasoning_label=row.get("reasoning_label"),
        attempts=int(attempts) if attempts is not None else None, failed=bool(row.get("failed", False)),
    )


def _vl_rewardbench(row: dict, ctx: RowContext, media: _Media) -> PreferencePair:
    responses = _get(row, "response", ctx)
    if not isinstance(responses, list) or len(responses) != 2:
        raise ctx.error("response", "malformed field", f"expected a list of two responses, got {str(responses)[:80]}",
                        "give exactly two responses")
    ranking = _get(row, "human_ranking", ctx)
    first = _label(tuple(ranking) if isinstance(ranking, list) else ranking, ctx, "human_ranking",
                   {(0, 1): "1", (1, 0): "2"})
    chosen, rejected = responses if first == "1" else responses[::-1]
    pics, video = media.images(_get(row, "image", ctx), ctx, "image")
    return PreferencePair(
        id=str(_get(row, "id", ctx)), question=_text(_get(row, "query", ctx)), chosen=_text(chosen),
        rejected=_text(rejected), images=pics, video=video, category=row.get("query_source") or "",
        source="vl-rewardbench", label=first,
    )


_BETTER = {"output1": "1", "output2": "2", "1": "1", "2": "2", 1: "1", 2: "2"}


def _multimodal_rewardbench(row: dict, ctx: RowContext, media: _Media) -> PreferencePair:
    better = _label(_get(row, "Better", ctx), ctx, "Better", _BETTER)
    out1, out2 = _text(_get(row, "Output1", ctx)), _text(_get(row, "Output2", ctx))
    pics, video = media.images(_get(row, "Image", ctx), ctx, "Image")
    return PreferencePair(
        id=str(_get(row, "ID", ctx)), question=_text(_get(row, "Text", ctx)),
        chosen=out1 if better == "1" else out2, rejected=out2 if better == "1" else out1, images=pics, video=video,
        # The released all_data.json nests it as Meta.Category (what its 2_get_accuracy.py reads).
        category=row.get("Category") or (row.get("Meta") or {}).get("Category") or "",
        source="multimodal-rewardbench", label=better,
    )


def _judge(row: dict, ctx: RowContext, media: _Media) -> PreferencePair:
    key = "prompt" if row.get("prompt") is not None else "messages"
    chat = _get(row, key, ctx, "give the judge prompt as `prompt` (RL rows) or `messages` (SFT rows)")
    try:
        chat = json.loads(chat) if isinstance(chat, str) else chat
        content = next(m for m in chat if m.get("role") == "user")["content"]
    except (json.JSONDecodeError, StopIteration, AttributeError, TypeError, KeyError) as exc:
        raise ctx.error(key, "malformed field", f"not a chat with a user turn ({exc})",
                        "give the chat as a list of {role, content} messages") from None
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    found = _JUDGE_PARTS.search("".join(p.get("text") or "" for p in parts if p.get("type") == "text"))
    if not found:
        raise ctx.error(key, "malformed field", "the user text is not the filled judge prompt",
                        "the text must hold '[Question]:', '[Response 1]:', '[Response 2]:' and '**Output Format'")
    question, answer1, answer2 = (s.strip() for s in found.groups())
    label = _label(_get(row, "label", ctx), ctx, "label", _MAPPED_LABELS)
    videos = row.get("videos") or []
    return PreferencePair(
        id=str(row.get("id") or ctx.where), question=question, chosen=answer1 if label == "1" else answer2,
        rejected=answer2 if label == "1" else answer1,
        images=[media.image(v, ctx, "images") for v in row.get("images") or []],
        video=[media.image(v, ctx, "videos") for v in videos[0]] if videos else None,
        category=row.get("category") or "", source=row.get("source") or "judge", label=label,
    )


_MAPPED_LABELS = {1: "1", 2: "2", "1": "1", "2": "2"}


def _columns(mapping: dict[str, str]) -> Callable[[dict, RowContext, _Media], PreferencePair]:
    unknown = set(mapping) - set(MAPPING_KEYS)
    if unknown:
        raise OptionError(f"unknown column mapping key(s) {sorted(unknown)}; allowed: {MAPPING_KEYS}")
    by_label = "label" in mapping
    needed = ("question", "response1", "response2", "label") if by_label else ("question", "chosen", "rejected")
    missing = [k for k in needed if k not in mapping]
    if missing:
        raise OptionError(f"column mapping lacks {missing}: give chosen/rejected, or response1/response2/label")

    def convert(row: dict, ctx: RowContext, media: _Media) -> PreferencePair:
        def col(key: str):
            return _get(row, mapping[key], ctx)

        def optional(key: str, default: str) -> str:
            return str(row.get(mapping[key]) or default) if key in mapping else default

        if by_label:
            label = _label(col("label"), ctx, mapping["label"], _MAPPED_LABELS)
            a, b = _text(col("response1")), _text(col("response2"))
            chosen, rejected = (a, b) if label == "1" else (b, a)
        else:
            chosen, rejected = _text(col("chosen")), _text(col("rejected"))
        media_key = next((k for k in ("images", "video") if k in mapping), None)
        pics, video = media.images(col(media_key), ctx, mapping[media_key]) if media_key else ([], None)
        return PreferencePair(
            id=optional("id", ctx.where.split()[-1]), question=_text(col("question")), chosen=chosen,
            rejected=rejected, images=pics, video=video, category=optional("category", ""),
            source=optional("source", "columns"),
        )

    return convert


_CONVERTERS = {
    "r1-reward": _r1_reward,
    "pairs": _pairs,
    "vl-rewardbench": _vl_rewardbench,
    "multimodal-rewardbench": _multimodal_rewardbench,
    "judge": _judge,
}
# Pair attributes -> the column a message should name, per format.
_FIELD_NAMES = {
    "r1-reward": dict(question="message", chosen="message", rejected="message", images="image"),
    "pairs": dict(question="prompt", chosen="chosen", rejected="rejected", images="image"),
    "vl-rewardbench": dict(question="query", chosen="response", rejected="response", images="image"),
    "multimodal-rewardbench": dict(
        question="Text", chosen="Output1/Output2", rejected="Output1/Output2", images="Image"
    ),
    "judge": dict(question="prompt", chosen="prompt", rejected="prompt", images="images"),
}


def detect_format(row: dict) -> str:
    """The format a row's keys say it has."""
    keys = set(row)
    if {"message", "answer"} <= keys:
        return "r1-reward"
    if "human_ranking" in keys:
        return "vl-rewardbench"
    if {"Output1", "Output2"} <= keys:
        return "multimodal-rewardbench"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "pairs"
    if "label" in keys and keys & {"prompt", "messages"}:
        return "judge"
    raise OptionError(f"cannot tell the format of a row with keys {sorted(keys)[:12]}; pass format= (--format) "
                      "or a column mapping (--columns)")


# --------------------------------------------------------------------------------------------- public


def iter_pairs(
    source: Source,
    format: str = "auto",  # noqa: A002 - the word users know
    *,
    columns: dict[str, str] | None = None,
    image_root: str | os.PathLike | None = None,
    num_frames: int = 8,
    check_images: str = "open",
    skip_invalid: bool = False,
    report: SkipReport | None = None,
    split: str = "train",
) -> Iterator[PreferencePair]:
    """Read a source row by row into validated pairs.

    A bad row raises `InvalidRowError` (file, line/row, field, fix); with `skip_invalid` it is
    counted in `report` instead, and the caller prints `report.summary()` (`load_pairs` does).
    """
    if check_images not in IMAGE_CHECKS:
        raise OptionError(f"check_images must be one of {IMAGE_CHECKS}, got {check_images!r}")
    if columns:
        format = "columns"  # noqa: A001
    elif format not in ("auto", *FORMATS) or format == "columns":
        raise OptionError(f"format must be 'auto' or one of {FORMATS[:-1]} (or give columns=), got {format!r}")
    if isinstance(source, str) and source.startswith(SYNTHETIC_PREFIX):  # the built-in task, by name
        n, difficulty, seed = parse_synthetic(source)
        yield from make_synthetic_pairs(n, seed, difficulty)
        return
    name, folder, rows = iter_rows(source, split)
    media = _Media(Path(image_root) if image_root is not None else folder, num_frames)
    report = report if report is not None else SkipReport()
    convert = _columns(columns) if columns else None
    fields = {}
    if columns:
        fields = {
            "question": columns.get("question"),
            "chosen": columns.get("chosen", columns.get("response1")),
            "rejected": columns.get("rejected", columns.get("response2")),
            "images": columns.get("images", columns.get("video")),
        }
    for where, row in rows:
        ctx = RowContext(name, where)
        try:
            if isinstance(row, Exception) or not isinstance(row, dict):
                detail = str(row) if isinstance(row, Exception) else f"a JSON {type(row).__name__}, not an object"
                raise ctx.error("(whole line)", "malformed line", detail, "write one JSON object per line")
            if convert is None:
                fmt = detect_format(row) if format == "auto" else format
                convert, fields = _CONVERTERS[fmt], _FIELD_NAMES[fmt]
            pair = convert(row, ctx, media)
            check_pair(pair, ctx, fields, check_images)
        except InvalidRowError as error:
            if not skip_invalid:
                raise
            report.add(error)
            continue
        yield pair


def load_pairs(source: Source, format: str = "auto", **kwargs) -> list[PreferencePair]:  # noqa: A002
    """All valid pairs of a source (see `iter_pairs`); skipped rows, if any, are reported as a warning."""
    report = kwargs.pop("report", None) or SkipReport()
    pairs = list(iter_pairs(source, format, report=report, **kwargs))
    report.log()
    return pairs


def collect_pairs(
    source: Source, format: str = "auto", *, skip_invalid: bool = False, max_listed: int = 20,  # noqa: A002
    fix: str = "for images: the paths, or --image-root", **kwargs,
) -> tuple[list[PreferencePair], SkipReport]:
    """(valid pairs, report of invalid rows), for the commands: every row is read, and without `skip_invalid`
    the invalid ones are raised together in one `InvalidRowsError` (the first `max_listed` spelled out),
    so a file is fixed in one pass. With it, the caller prints `report.summary()` once."""
    report = SkipReport(max_examples=max_listed)
    pairs = list(iter_pairs(source, format, skip_invalid=True, report=report, **kwargs))
    if report.total and not skip_invalid:
        raise InvalidRowsError(str(source), report, len(pairs), fix)
    return pairs, report


def load_judge_dataset(
    source: Source,
    format: str = "auto",  # noqa: A002
    *,
    seed: int = 0,
    both_orders: bool = False,
    frames_as_images: bool = False,
    **kwargs,
) -> datasets.Dataset:
    """A source straight to judge rows (`prompt`, `images`, `label`, ...); kwargs as for `iter_pairs`."""
    pairs = load_pairs(source, format, **kwargs)
    return judge_dataset(pairs, seed=seed, both_orders=both_orders, frames_as_images=frames_as_images)
