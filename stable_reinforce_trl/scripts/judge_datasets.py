"""Dataset selection shared by the two recipes: `dataset_name` is a source the package's loaders read,
or `synthetic:N[:difficulty[:seed]]` for the built-in synthetic task (no files needed).

A source that already holds the rows a trainer wants (`messages` for SFT; `prompt` and the label column
for RL: what `stable-reinforce convert` / `select-hard` write) is used as is; anything else is read as
preference pairs (`r1-reward`, `pairs`, `vl-rewardbench`, ...) and turned into judge rows, with the
labels balanced so that "1" and "2" are each right half the time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from trl import ScriptArguments

from stable_reinforce_trl.data import sft_dataset, synthetic_judge_dataset, synthetic_sft_dataset
from stable_reinforce_trl.data.synthetic import (  # noqa: F401 - SYNTHETIC_PREFIX re-exported
    SYNTHETIC_PREFIX,
    TERSE_VERDICTS,
    parse_synthetic,
)
from stable_reinforce_trl.data.loaders import FORMATS, collect_pairs
from stable_reinforce_trl.data.pairs import judge_dataset
from stable_reinforce_trl.data.validation import InvalidRowsError, OptionError, RowContext, SkipReport

# Evaluation rows of the synthetic task come from another seed, so they never repeat a training row.
SYNTHETIC_EVAL_SEED_OFFSET = 1000


@dataclass
class JudgeScriptArguments(ScriptArguments):
    """TRL's `ScriptArguments`, where `dataset_name` may also be a local judge/pairs file or `synthetic:N`.

    Args:
        dataset_format (`str`, *optional*, defaults to `"auto"`):
            Format of a preference-pair source (see `stable_reinforce_trl.data.loaders`); `auto` detects it.
        image_root (`str`, *optional*):
            Folder that relative image paths start from (default: the data file's folder).
        skip_invalid (`bool`, *optional*, defaults to `False`):
            Drop invalid pair rows (they are counted and reported) instead of failing on the first.
        frames_as_images (`bool`, *optional*, defaults to `False`):
            Send video frames as images (one placeholder each) rather than as one video.
        synthetic_terse_traces (`float`, *optional*, defaults to `0.0`):
            For `synthetic:N` SFT data: the share of traces that give only the verdict, as a teacher that often
            skips its reasoning does (the demo's and the tiny recipe's cold start).
        synthetic_terse_verdicts (`str`, *optional*, defaults to `"right"`):
            What those verdict-only traces name: `right`, `guess` (a coin flip) or `1` (always Response 1, a
            position-biased teacher, as the demo's).
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A save_to_disk folder, a jsonl/json/parquet file or a Hub dataset, either already in judge form "
            "or in a preference-pair format the loaders read; or 'synthetic:N[:difficulty[:seed]]' for the "
            "built-in synthetic task (difficulty: easy, medium, hard)."
        },
    )
    dataset_format: str = field(
        default="auto",
        metadata={"help": "Format of a preference-pair source.", "choices": ["auto", *FORMATS[:-1]]},
    )
    image_root: str | None = field(default=None, metadata={"help": "Folder relative image paths start from."})
    skip_invalid: bool = field(default=False, metadata={"help": "Drop (and report) invalid pair rows."})
    frames_as_images: bool = field(default=False, metadata={"help": "Send video frames as images."})
    synthetic_terse_traces: float = field(
        default=0.0, metadata={"help": "synthetic:N SFT data: share of traces that give only the verdict."}
    )
    synthetic_terse_verdicts: str = field(
        default="right",
        metadata={"help": "synthetic:N SFT data: what verdict-only traces name.", "choices": list(TERSE_VERDICTS)},
    )


def parse_recipe_args(parser, argv: list[str] | None):
    """A recipe's (script, training, model) arguments from `--config X.yaml` and flags, with a user's mistake
    (an unknown field, an impossible combination, a wrong model path) as one `OptionError`, not a traceback."""
    try:
        script_args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as exc:  # TrlParser and TrainingArguments' __post_init__ say what is wrong this way
        raise OptionError(f"{exc} Fix: see `--help` for the fields and their defaults") from None
    check_model(model_args.model_name_or_path)
    return script_args, training_args, model_args


def check_model(name: str | None, option: str = "model_name_or_path") -> None:
    """Refuse, before any training setup, a model that cannot be loaded: a wrong path is the commonest typo."""
    from transformers import AutoConfig

    if not name:
        raise OptionError(f"Give {option}: a folder saved with save_pretrained or a Hub model id.")
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:  # transformers' words for "no config.json there" and "not a config"
        raise OptionError(f"{option} {name}: cannot load a model from it ({str(exc).splitlines()[0]}). Fix: give a "
                          "folder saved with save_pretrained (config.json, weights, processor) or a Hub model id "
                          "(`stable-reinforce make-tiny-model DIR` builds the offline tiny one)") from None


def eval_split(dataset: datasets.DatasetDict, args: JudgeScriptArguments, eval_strategy) -> datasets.Dataset | None:
    """The evaluation split when the trainer evaluates; files hold only a train split, synthetic:N has both."""
    strategy = str(getattr(eval_strategy, "value", eval_strategy))
    if strategy == "no":
        return None
    if args.dataset_test_split not in dataset:
        raise OptionError(
            f"eval_strategy={strategy!r} needs a {args.dataset_test_split!r} split, and {args.dataset_name} has "
            f"only {list(dataset)}. Use a Hub dataset or folder with that split, or set eval_strategy: no."
        )
    return dataset[args.dataset_test_split]


def _first_row(path: Path) -> dict | None:
    if path.suffix == ".parquet":
        ds = datasets.Dataset.from_parquet(str(path))
        return ds[0] if len(ds) else None
    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        return rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return row if isinstance(row, dict) else None
    return None


def _resolve_images(ds: datasets.Dataset, root: Path, source: str, skip_invalid: bool) -> datasets.Dataset:
    """Image and frame paths of a judge-row file, absolute: relative ones start from `root` (the file's folder,
    or `image_root`), never from the working folder, so a file trains the same from anywhere. Every row whose
    image is missing is listed at once, here, rather than found by the trainer mid-run."""
    report, bad = SkipReport(), set()

    def resolve(ref, index: int, field_name: str):
        path = ref.get("path") if isinstance(ref, dict) and not ref.get("bytes") else ref
        if not isinstance(path, str):
            return ref
        full = os.path.abspath(os.path.join(root, path))  # an absolute path stays as it is
        if not os.path.isfile(full):
            bad.add(index)
            report.add(RowContext(source, f"row {index}").error(
                field_name, "missing image", f"no file at {full}",
                "relative paths start from the data file's folder: fix the path, pass image_root (--image_root), "
                "or rewrite the file with `stable-reinforce convert`, which writes absolute paths"))
        return full

    def resolve_row(row, index):
        out = {}
        if "images" in row:
            out["images"] = [resolve(p, index, "images") for p in row["images"] or []]
        if "videos" in row:
            out["videos"] = [[resolve(p, index, "videos") for p in video or []] for video in row["videos"] or []]
        return out

    columns = [c for c in ("images", "videos") if c in ds.column_names]
    if not columns:
        return ds
    # One pass in Python first (map's cache would hide the report on a rerun), then the columns as Image features.
    resolved = [resolve_row(row, i) for i, row in enumerate(ds.select_columns(columns).to_list())]
    if report.total:
        if not skip_invalid:
            raise InvalidRowsError(source, report, len(ds) - len(bad), "the image paths, or image_root")
        print(report.summary())
    ds = ds.remove_columns(columns)
    for column in columns:
        ds = ds.add_column(column, [row[column] for row in resolved])
    keep = [i for i in range(len(ds)) if i not in bad]
    ds = ds.select(keep) if len(keep) < len(ds) else ds
    if "images" in columns:
        ds = ds.cast_column("images", datasets.List(datasets.Image()))
    if "videos" in columns:
        ds = ds.cast_column("videos", datasets.List(datasets.List(datasets.Image())))
    return ds


def _ready(ds: datasets.Dataset, columns: tuple[str, ...]) -> bool:
    return set(columns) <= set(ds.column_names)


def load_recipe_dataset(args: JudgeScriptArguments, kind: str, *, label_column: str = "label", seed: int = 0):
    """A `DatasetDict` of `kind` rows: "sft" (`messages` + `images`) or "rl" (`prompt` + `images` + label)."""
    if kind not in ("sft", "rl"):
        raise ValueError(f"kind must be 'sft' or 'rl', got {kind!r}")
    if not args.dataset_name:
        raise OptionError("Give dataset_name: a data file or folder, a Hub dataset, or synthetic:N.")
    if args.dataset_streaming:
        raise OptionError("dataset_streaming is not supported: judge rows are built from the whole source.")
    wanted = ("messages",) if kind == "sft" else ("prompt", label_column)

    synthetic = parse_synthetic(args.dataset_name)
    if synthetic is not None:
        n, difficulty, data_seed = synthetic
        if not 0.0 <= args.synthetic_terse_traces <= 1.0:
            raise OptionError(f"synthetic_terse_traces is a share of the traces, in [0, 1]; got "
                              f"{args.synthetic_terse_traces}")  # fmt: skip
        if args.synthetic_terse_verdicts not in TERSE_VERDICTS:
            raise OptionError(f"synthetic_terse_verdicts must be one of {list(TERSE_VERDICTS)}; got "
                              f"{args.synthetic_terse_verdicts!r}")  # fmt: skip
        make = synthetic_sft_dataset if kind == "sft" else synthetic_judge_dataset
        terse = {"terse_traces": args.synthetic_terse_traces, "terse_verdicts": args.synthetic_terse_verdicts}
        terse = terse if kind == "sft" else {}  # the train split only
        return datasets.DatasetDict(
            {
                args.dataset_train_split: make(n, data_seed, difficulty, **terse),
                args.dataset_test_split: make(max(4, n // 8), data_seed + SYNTHETIC_EVAL_SEED_OFFSET, difficulty),
            }
        )

    pair_kwargs = dict(
        image_root=args.image_root, skip_invalid=args.skip_invalid, split=args.dataset_train_split
    )

    def from_pairs(source):
        pairs, report = collect_pairs(source, args.dataset_format, fix="the paths, or image_root", **pair_kwargs)
        if report.total:
            print(report.summary())
        if not pairs:
            raise OptionError(f"{args.dataset_name}: no valid pairs to train on")
        if kind == "rl":
            return judge_dataset(pairs, seed=seed, frames_as_images=args.frames_as_images)
        return sft_dataset(pairs, frames_as_images=args.frames_as_images)

    path = Path(args.dataset_name)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            return loaded if _ready(loaded[args.dataset_train_split], wanted) else datasets.DatasetDict(
                {split: from_pairs(ds) for split, ds in loaded.items()}
            )
        return datasets.DatasetDict({args.dataset_train_split: loaded if _ready(loaded, wanted) else from_pairs(path)})
    if path.is_file():
        row = _first_row(path)
        if row is not None and set(wanted) <= set(row):
            builder = "parquet" if path.suffix == ".parquet" else "json"
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
            root = Path(args.image_root) if args.image_root else path.parent
            resolved = _resolve_images(ds, root, str(path), args.skip_invalid)
            return datasets.DatasetDict({args.dataset_train_split: resolved})
        return datasets.DatasetDict({args.dataset_train_split: from_pairs(path)})

    # A Hub dataset: judge rows as they are, or pairs converted split by split.
    loaded = datasets.load_dataset(args.dataset_name, name=args.dataset_config)
    if _ready(loaded[args.dataset_train_split], wanted):
        return loaded
    return datasets.DatasetDict({split: from_pairs(ds) for split, ds in loaded.items()})
