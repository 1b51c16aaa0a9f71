"""A synthetic multimodal preference task drawn with PIL, for the demo, tests and benchmarks.

Each image holds coloured shapes on a grid (one large shape for `easy`, up to nine for `hard`); the
question asks about their colour, shape, count or position; one response states the truth and the
other a wrong value. The two values are drawn first and only then is one made true by drawing the
scene, so the text alone says nothing about which response is right: a judge has to look at the
image. Traces are written by rule: they restate both claims, say what the image shows and end with
a sentence naming the better response ("So Response 2 is better.").

The vocabulary is small and regular on purpose: a tiny (hidden size 64) model learns it on CPU.
`basic` (one large shape, red or blue) is the demo's task; `easy` adds a third colour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import datasets
from PIL import Image, ImageDraw

from .pairs import PreferencePair, balanced_labels, judge_dataset, sft_dataset
from .validation import OptionError

# `synthetic:N[:difficulty[:seed]]`: the task as a source name, wherever a data file is accepted.
SYNTHETIC_PREFIX = "synthetic:"

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 60, 220),
    "green": (30, 160, 50),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Grid cells (row, col) that name a position without ambiguity: "left" is never also "top".
POSITIONS = {"left": (1, 0), "right": (1, 2), "top": (0, 1), "bottom": (2, 1), "center": (1, 1)}
TASKS = ("colour", "shape", "count", "position")


@dataclass(frozen=True)
class SyntheticDifficulty:
    """The knobs: how many colours/shapes are in play, how many distractor objects share the image,
    how far the wrong answer is from the truth, and how the image is laid out.

    - `lures`: the wrong answer names something that *is* in the image (a distractor's colour or
      shape, a count off by one), so spotting a colour is not enough: it must be bound to the shape.
    - `image_size`: pixels per side (the tiny model's processor caps images at 112).
    - `grid`: the image is a grid x grid board with at most one object per cell. `grid=1` draws one
      large object that every image token sees; it is what a 2-layer model can learn to ground in
      minutes on a CPU. The position task needs the 3x3 board.
    """

    tasks: tuple[str, ...] = ("colour",)
    colours: int = 3
    shapes: int = 2
    max_count: int = 3
    distractors: int = 0
    lures: bool = False
    image_size: int = 56
    grid: int = 3

    def __post_init__(self):
        if not set(self.tasks) <= set(TASKS) or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if not 2 <= self.colours <= len(COLOURS) or not 2 <= self.shapes <= len(SHAPES):
            raise ValueError(f"colours in 2..{len(COLOURS)} and shapes in 2..{len(SHAPES)} required")
        if self.grid not in (1, 2, 3) or ("position" in self.tasks and self.grid != 3):
            raise ValueError(f"grid must be 1, 2 or 3 (3 for the position task), got {self.grid}")
        cells = self.grid**2
        counted = self.max_count if "count" in self.tasks else 1
        if not 2 <= self.max_count <= 6 or counted + self.distractors > cells:
            raise ValueError(f"max_count in 2..6 and (max_count if counting, else 1) + distractors <= {cells} "
                             "(one object per grid cell)")  # fmt: skip
        if not 28 <= self.image_size <= 448:
            raise ValueError(f"image_size must be in 28..448, got {self.image_size}")


DIFFICULTIES: dict[str, SyntheticDifficulty] = {
    "basic": SyntheticDifficulty(tasks=("colour",), colours=2, shapes=2, grid=1),
    "easy": SyntheticDifficulty(tasks=("colour",), colours=3, shapes=2, grid=1),
    "medium": SyntheticDifficulty(tasks=("colour", "shape", "count"), colours=4, shapes=3, distractors=1, lures=True),
    "hard": SyntheticDifficulty(
        tasks=TASKS, colours=6, shapes=4, max_count=5, distractors=3, lures=True, image_size=84
    ),
}


@dataclass
class _Scene:
    question: str
    truth: str  # the correct response
    wrong: str
    fact: str  # what the image shows, for the trace
    objects: list[tuple[str, str, tuple[int, int]]]  # (shape, colour, cell)


def _plural(n: int, colour: str, shape: str) -> str:
    return f"{NUMBERS[n]} {colour} {shape}" + ("" if n == 1 else "s")


def _place(rng: random.Random, d, targets: list[tuple[str, str]], distractors: list[tuple[str, str]], fixed=None):
    free = [(r, c) for r in range(d.grid) for c in range(d.grid) if (r, c) != fixed]
    rng.shuffle(free)
    cells = ([fixed] if fixed else []) + free
    return [(s, c, cell) for (s, c), cell in zip(targets + distractors, cells)]


def _distractors(rng, k, colours, shapes, allowed) -> list[tuple[str, str]]:
    """k (shape, colour) objects passing `allowed`, so none can be mistaken for the target."""
    pool = [(s, c) for s in shapes for c in colours if allowed(s, c)]
    return [rng.choice(pool) for _ in range(k)] if pool else []


def _two(rng: random.Random, values: list[str], lure: str | None) -> tuple[str, str]:
    """(truth, wrong): a lure, when given, is the wrong one; which of the two values is true is a coin flip,
    so the pair of values, seen as text, is symmetric."""
    a = rng.choice(values)
    b = lure if lure is not None and lure != a else rng.choice([v for v in values if v != a])
    return (a, b) if rng.random() < 0.5 or lure is not None else (b, a)


def _colour_scene(rng, d, colours, shapes) -> _Scene:
    shape = rng.choice(shapes)
    others = _distractors(rng, d.distractors, colours, shapes, lambda s, c: s != shape)
    lure_pool = [c for _, c in others]
    truth, wrong = _two(rng, colours, rng.choice(lure_pool) if d.lures and lure_pool else None)
    objects = _place(rng, d, [(shape, truth)], others)
    say = lambda colour: f"The {shape} is {colour}."  # noqa: E731
    return _Scene(f"What colour is the {shape}?", say(truth), say(wrong), f"a {truth} {shape}", objects)


def _shape_scene(rng, d, colours, shapes) -> _Scene:
    colour = rng.choice(colours)
    others = _distractors(rng, d.distractors, colours, shapes, lambda s, c: c != colour)
    lure_pool = [s for s, _ in others]
    truth, wrong = _two(rng, shapes, rng.choice(lure_pool) if d.lures and lure_pool else None)
    objects = _place(rng, d, [(truth, colour)], others)
    say = lambda shape: f"The {colour} shape is a {shape}."  # noqa: E731
    return _Scene(f"Which shape is {colour}?", say(truth), say(wrong), f"a {colour} {truth}", objects)


def _count_scene(rng, d, colours, shapes) -> _Scene:
    shape, colour = rng.choice(shapes), rng.choice(colours)
    if d.lures:  # off by one, drawn as a pair first so neither number is more likely the true one
        low = rng.randint(1, d.max_count - 1)
        n_true, n_wrong = (low, low + 1) if rng.random() < 0.5 else (low + 1, low)
    else:
        n_true, n_wrong = rng.sample(range(1, d.max_count + 1), 2)
    # Distractors share the colour or the shape (not both), so counting needs both attributes.
    others = _distractors(rng, d.distractors, colours, shapes, lambda s, c: (s == shape) != (c == colour))
    objects = _place(rng, d, [(shape, colour)] * n_true, others)
    say = lambda n: f"There {'is' if n == 1 else 'are'} {_plural(n, colour, shape)}."  # noqa: E731
    return _Scene(
        f"How many {colour} {shape}s are there?", say(n_true), say(n_wrong), _plural(n_true, colour, shape), objects
    )


def _position_scene(rng, d, colours, shapes) -> _Scene:
    shape, colour = rng.choice(shapes), rng.choice(colours)
    truth, wrong = _two(rng, list(POSITIONS), None)
    others = _distractors(rng, d.distractors, colours, shapes, lambda s, c: (s, c) != (shape, colour))
    objects = _place(rng, d, [(shape, colour)], others, fixed=POSITIONS[truth])
    say = lambda pos: f"The {colour} {shape} is at the {pos}."  # noqa: E731
    fact = f"the {colour} {shape} at the {truth}"
    return _Scene(f"Where is the {colour} {shape}?", say(truth), say(wrong), fact, objects)


_SCENES = {"colour": _colour_scene, "shape": _shape_scene, "count": _count_scene, "position": _position_scene}


def draw(objects: list[tuple[str, str, tuple[int, int]]], size: int, rng: random.Random, grid: int = 3) -> Image.Image:
    """White canvas, one shape per grid cell, slightly jittered so positions are not pixel-exact."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    cell = size / grid
    radius = cell * 0.36
    jitter = max(1, int(cell * 0.08))
    for shape, colour, (row, col) in objects:
        cx = (col + 0.5) * cell + rng.randint(-jitter, jitter)
        cy = (row + 0.5) * cell + rng.randint(-jitter, jitter)
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        fill = COLOURS[colour]
        if shape == "circle":
            pen.ellipse(box, fill=fill)
        elif shape == "square":
            pen.rectangle(box, fill=fill)
        elif shape == "triangle":
            pen.polygon([(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)], fill=fill)
        else:  # star: two overlaid triangles
            for tip in (-1, 1):
                base = -tip * radius * 0.5
                pen.polygon([(cx, cy + tip * radius), (cx + radius, cy + base), (cx - radius, cy + base)], fill=fill)
    return image


def _claim(response: str) -> str:
    return response[0].lower() + response[1:].rstrip(".")


def synthetic_trace(fact: str, answer1: str, answer2: str, label: str) -> str:
    """The rule-written trace: restate each response's claim, say what the image shows, name the better one.

    Claims first, the image second: the verdict then needs one lookup (which restated claim matches the
    fact just written) rather than a chain of per-response judgements, which is what a 2-layer model can
    learn in a few hundred CPU steps; a 7B model reads either order alike.
    """
    return (
        f"Response 1 says {_claim(answer1)}. "
        f"Response 2 says {_claim(answer2)}. "
        f"The image shows {fact}. "
        f"So Response {label} is better."
    )


TERSE_VERDICTS = ("right", "guess", "1")


def terse_trace(label: str) -> str:
    """What a teacher writes when it gives its verdict without its reasoning."""
    return f"So Response {label} is better."


def _difficulty(difficulty: str | SyntheticDifficulty) -> tuple[str, SyntheticDifficulty]:
    if isinstance(difficulty, SyntheticDifficulty):
        return "custom", difficulty
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)} or a SyntheticDifficulty, "
                         f"got {difficulty!r}")
    return difficulty, DIFFICULTIES[difficulty]


def check_teacher(
    difficulty: str | SyntheticDifficulty, terse_traces: float, terse_verdicts: str
) -> tuple[str, SyntheticDifficulty]:
    """`make_synthetic_pairs`' settings checked (ValueError naming the setting); the difficulty's name and spec."""
    if not 0.0 <= terse_traces <= 1.0:
        raise ValueError(f"terse_traces is a share of the pairs, in [0, 1]; got {terse_traces}")
    if terse_verdicts not in TERSE_VERDICTS:
        raise ValueError(f"terse_verdicts must be one of {list(TERSE_VERDICTS)}, got {terse_verdicts!r}")
    return _difficulty(difficulty)


def parse_synthetic(name: str) -> tuple[int, str, int] | None:
    """`synthetic:N[:difficulty[:seed]]` -> (N, difficulty, seed); None for any other name."""
    if not name.startswith(SYNTHETIC_PREFIX):
        return None
    parts = name[len(SYNTHETIC_PREFIX) :].split(":")
    try:
        n = int(parts[0])
        difficulty = parts[1] if len(parts) > 1 and parts[1] else "easy"
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise OptionError(f"{name!r}: expected synthetic:N[:difficulty[:seed]], e.g. synthetic:64:easy") from None
    if len(parts) > 3 or n < 1:
        raise OptionError(f"{name!r}: expected synthetic:N[:difficulty[:seed]] with N >= 1")
    if difficulty not in DIFFICULTIES:
        raise OptionError(f"{name!r}: difficulty must be one of {list(DIFFICULTIES)}")
    return n, difficulty, seed


def make_synthetic_pairs(
    n: int,
    seed: int = 0,
    difficulty: str | SyntheticDifficulty = "easy",
    *,
    terse_traces: float = 0.0,
    terse_verdicts: str = "right",
) -> list[PreferencePair]:
    """n synthetic pairs, deterministic for a seed; tasks cycle so each appears equally often.

    Each pair carries a rule-written trace (`reasoning`, for the order `reasoning_label`, seeded and
    exactly balanced), so `sft_dataset` can use it like a teacher's annotation. `terse_traces` is the
    share of pairs (exactly, seeded) whose trace is only the verdict (`terse_trace`): a teacher that
    often answers without showing its reasoning. `terse_verdicts` is what those verdicts name: "right" the
    right response; "guess" a coin flip (exactly half, seeded, name the wrong one); "1" always Response 1, a
    teacher with a position bias. A wrong verdict is stored as the pair with `chosen` and `rejected` swapped,
    so the teacher's pick is always `chosen`. Reasoned traces are always right, and the images and questions
    are the same for every setting.
    """
    name, d = check_teacher(difficulty, terse_traces, terse_verdicts)
    terse = random.Random(f"terse-{seed}").sample(range(n), round(terse_traces * n))
    guessed_wrong = set(random.Random(f"terse-wrong-{seed}").sample(terse, len(terse) // 2))
    terse = set(terse)
    rng = random.Random(f"synthetic-{seed}")
    colours, shapes = list(COLOURS)[: d.colours], list(SHAPES)[: d.shapes]
    labels = balanced_labels(n, seed)
    pairs = []
    for i in range(n):
        task = d.tasks[i % len(d.tasks)]
        scene = _SCENES[task](rng, d, colours, shapes)
        pair = PreferencePair(
            id=f"synthetic-{name}-{seed}-{i}",
            question=scene.question,
            chosen=scene.truth,
            rejected=scene.wrong,
            images=[draw(scene.objects, d.image_size, rng, d.grid)],
            category=task,
            source=f"synthetic-{name}",
        )
        label = labels[i]
        if i in terse:
            if terse_verdicts == "guess" and i in guessed_wrong:
                pair.chosen, pair.rejected = pair.rejected, pair.chosen  # names the response the image contradicts
            elif terse_verdicts == "1":  # Response 1, wherever the truth sits: wrong when it sits second
                if label != "1":
                    pair.chosen, pair.rejected = pair.rejected, pair.chosen
                label = "1"
            pair.reasoning = terse_trace(label)
        else:
            pair.reasoning = synthetic_trace(scene.fact, *pair.responses(label), label)
        pair.reasoning_label = label
        pairs.append(pair)
    return pairs


def synthetic_judge_dataset(
    n: int, seed: int = 0, difficulty: str | SyntheticDifficulty = "easy", *, both_orders: bool = False
) -> datasets.Dataset:
    """Judge rows (prompt, images, label "1"/"2", id, category, source) for RL or evaluation."""
    return judge_dataset(make_synthetic_pairs(n, seed, difficulty), seed=seed, both_orders=both_orders)


def synthetic_sft_dataset(
    n: int,
    seed: int = 0,
    difficulty: str | SyntheticDifficulty = "easy",
    *,
    terse_traces: float = 0.0,
    terse_verdicts: str = "right",
) -> datasets.Dataset:
    """SFT rows (messages with the rule-written `<think>..</think><answer>N</answer>`, images, label, ...)."""
    return sft_dataset(make_synthetic_pairs(n, seed, difficulty, terse_traces=terse_traces,
                                            terse_verdicts=terse_verdicts))  # fmt: skip
