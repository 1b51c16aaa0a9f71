"""TRL reward functions for judge (reward-model) training, and R1-Reward's combined reward.

Each takes TRL's reward-function arguments, `(prompts, completions, **columns)`, so it works in any
GRPO script as well as in `StableReinforceTrainer`:

    reward = Result * (1 + consistency_weight * Consistency) + format_weight * Formatting
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..prompts import INVALID, completion_text, is_well_formatted, parse_judgement, parse_verdict
from .referees import Judgement, OpenAIReferee, Referee, RefereeRequest, RuleReferee, TransformersReferee

if TYPE_CHECKING:
    from ..config import StableReinforceConfig

logger = logging.getLogger(__name__)


def parse_label(value: Any) -> int:
    """A dataset label as 1 or 2: accepts 1, "1", "<answer>1</answer>" and one-element lists of these."""
    original = value
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        value = value.strip()
        value = parse_verdict(value) if "<answer>" in value else value
    if value in (1, 2, "1", "2"):
        return int(value)
    raise ValueError(f"label {original!r} is not 1 or 2 (also accepted: '1', '<answer>1</answer>', ['2']).")


def _labels(columns: dict, label_column: str, n: int) -> list[int]:
    if label_column not in columns:
        names = sorted(k for k in columns if k not in ("trainer_state", "log_metric", "log_extra", "environments"))
        raise ValueError(f"no label column {label_column!r} among the dataset columns {names}; set label_column.")
    labels = columns[label_column]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels in column {label_column!r} for {n} completions.")
    return [parse_label(v) for v in labels]


def format_reward(prompts: Sequence | None, completions: Sequence, format_mode: str = "strict", **columns) -> list[float]:
    """1.0 when the completion is exactly `<think>..</think><answer>..</answer>` (one of each tag), else 0.0.

    `format_mode="strict"` is the reference's pattern (nothing between `</think>` and `<answer>`); choose
    `"lenient"` (whitespace allowed) with `functools.partial(format_reward, format_mode="lenient")`.
    """
    return [1.0 if is_well_formatted(c, format_mode) else 0.0 for c in completions]


def result_reward(
    prompts: Sequence | None, completions: Sequence, label_column: str = "label", **columns
) -> list[float]:
    """1.0 when the chosen response matches the label column, else 0.0 (an invalid answer is 0.0).

    Choose the column with `functools.partial(result_reward, label_column="answer")`.
    """
    labels = _labels(columns, label_column, len(completions))
    return [1.0 if parse_verdict(c) == label else 0.0 for c, label in zip(completions, labels)]


@dataclass(frozen=True)
class ConsistencyScale:
    """The consistency value for a consistent answer, an inconsistent one, and a failed referee call."""

    consistent: float
    inconsistent: float
    failed: float


CONSISTENCY_SCALES = {
    # Paper: {1, 0}. The paper never says what a failed call gives; we give the midpoint, so an outage
    # neither rewards nor punishes the policy relative to the two real outcomes.
    "paper": ConsistencyScale(1.0, 0.0, 0.5),
    # Reference code: +1 / -1, and 0 when the referee's output cannot be parsed.
    "reference": ConsistencyScale(1.0, -1.0, 0.0),
}


def _first_image(columns: dict, i: int) -> Any:
    # TRL's vision datasets carry `images` (a list per sample); some carry a single `image`.
    images = columns.get("images")
    if images is not None and images[i]:
        return images[i][0] if isinstance(images[i], (list, tuple)) else images[i]
    image = columns.get("image")
    return image[i] if image is not None else None


class R1Reward:
    """R1-Reward's reward: `Result * (1 + consistency_weight * Consistency) + format_weight * Formatting`.

    - Result: 1 when the chosen response matches `label_column`, else 0 (an unparseable answer is 0).
    - Formatting: 1 for exactly `<think>..</think><answer>..</answer>` (`format_mode`: `"strict"`, the
      reference's pattern, or `"lenient"` about whitespace), else 0.
    - Consistency: the `referee`'s view of whether the reasoning supports the answer, on the scale of
      `consistency_mode` (see `CONSISTENCY_SCALES`). It only matters when Result is 1, so the referee is
      asked only about correct answers. `referee=None` drops the term.

    An async callable, so TRL runs it concurrently with other async reward functions. It logs
    `r1_reward/result`, `r1_reward/format`, `r1_reward/consistency` (mean over answered referee calls),
    `referee/failures` (failed calls this batch) and `referee/latency` (mean seconds per call) through TRL's
    `log_metric`, and the referee's verdict per completion as the `referee` column through `log_extra`.
    A failing referee never raises: its calls count as failures and get the scale's neutral value.
    """

    def __init__(
        self,
        referee: Referee | None = None,
        *,
        consistency_mode: str = "paper",
        consistency_weight: float = 0.5,
        format_weight: float = 0.5,
        format_mode: str = "strict",
        label_column: str = "label",
        name: str = "r1_reward",
    ):
        if consistency_mode not in CONSISTENCY_SCALES:
            raise ValueError(
                f"consistency_mode must be one of {sorted(CONSISTENCY_SCALES)}, got {consistency_mode!r}."
            )
        self.referee = referee
        self.scale = CONSISTENCY_SCALES[consistency_mode]
        self.consistency_mode = consistency_mode
        self.consistency_weight = consistency_weight
        self.format_weight = format_weight
        is_well_formatted("", format_mode)  # an unknown mode fails here, not at the first batch
        self.format_mode = format_mode
        self.label_column = label_column
        self.__name__ = name  # TRL names the reward's metrics after it
        self._warned_all_failed = False
        self._logged_raise = False

    def __repr__(self) -> str:
        return (
            f"R1Reward(referee={self.referee!r}, consistency_mode={self.consistency_mode!r}, "
            f"consistency_weight={self.consistency_weight}, format_weight={self.format_weight}, "
            f"format_mode={self.format_mode!r}, "
            f"label_column={self.label_column!r})"
        )

    async def __call__(
        self,
        prompts: Sequence | None,
        completions: Sequence,
        completion_ids: Sequence | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **columns,
    ) -> list[float]:
        n = len(completions)
        if n == 0:
            return []
        labels = _labels(columns, self.label_column, n)
        judged = [parse_judgement(completion_text(c), self.format_mode) for c in completions]
        results = [1.0 if j.verdict != INVALID and j.verdict == label else 0.0 for j, label in zip(judged, labels)]
        formats = [1.0 if j.well_formatted else 0.0 for j in judged]

        consistency = [0.0] * n
        referee_column = ["not asked"] * n
        asked = [i for i in range(n) if results[i]] if self.referee and self.consistency_weight else []
        requests = [RefereeRequest(judged[i].reasoning, judged[i].verdict, _first_image(columns, i)) for i in asked]
        judgements = await self._judge(requests)
        for i, judgement in zip(asked, judgements):
            consistency[i], referee_column[i] = self._score(judgement)

        rewards = [
            r * (1 + self.consistency_weight * c) + self.format_weight * f
            for r, c, f in zip(results, consistency, formats)
        ]
        self._report(log_metric, log_extra, results, formats, consistency, asked, judgements, referee_column)
        return rewards

    async def aclose(self) -> None:
        """Close the referee's connections (call from the event loop the reward ran on)."""
        if self.referee is not None:
            await self.referee.aclose()

    async def _judge(self, requests: list[RefereeRequest]) -> list[Judgement]:
        if not requests:
            return []
        try:
            judgements = await self.referee.judge(requests)
            if len(judgements) != len(requests):
                raise RuntimeError(f"{len(judgements)} judgements for {len(requests)} requests")
        except Exception as exc:  # a referee bug must not stop training: every call counts as failed
            # The traceback once; a referee that always raises would otherwise flood the log every step.
            log = logger.debug if self._logged_raise else logger.exception
            log("referee %r raised; consistency is neutral for this batch", self.referee, exc_info=True)
            self._logged_raise = True
            judgements = [Judgement(None, error=f"referee raised {exc!r}") for _ in requests]
        if all(j.consistent is None for j in judgements) and not self._warned_all_failed:
            self._warned_all_failed = True
            message = (
                f"The consistency referee {self.referee!r} failed all {len(judgements)} calls of this batch (first "
                f"error: {judgements[0].error}); consistency is neutral for all of them. Check the referee "
                "(endpoint up? model name? timeout?). This warning is shown once; watch `referee/failures`."
            )
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return judgements

    def _score(self, judgement: Judgement) -> tuple[float, str]:
        if judgement.consistent is None:
            return self.scale.failed, f"failed: {judgement.error}"
        if judgement.consistent:
            return self.scale.consistent, "consistent"
        return self.scale.inconsistent, "inconsistent"

    def _report(self, log_metric, log_extra, results, formats, consistency, asked, judgements, referee_column):
        if log_metric is not None:
            log_metric(f"{self.__name__}/result", sum(results) / len(results))
            log_metric(f"{self.__name__}/format", sum(formats) / len(formats))
            answered = [consistency[i] for i, j in zip(asked, judgements) if j.consistent is not None]
            if answered:
                log_metric(f"{self.__name__}/consistency", sum(answered) / len(answered))
            if self.referee is not None:
                log_metric("referee/failures", float(sum(j.consistent is None for j in judgements)))
                latencies = [j.latency_s for j in judgements if j.latency_s is not None]
                if latencies:
                    log_metric("referee/latency", sum(latencies) / len(latencies))
        if log_extra is not None and self.referee is not None:
            log_extra("referee", referee_column)


def build_referee(config: "StableReinforceConfig") -> Referee | None:
    """The referee that `config.referee` names (`openai`, `transformers`, `rule`, `none`), from the config's fields."""
    kind = config.referee
    if kind == "none":
        return None
    if kind == "rule":
        return RuleReferee()
    if kind == "openai":
        return OpenAIReferee(
            config.referee_base_url,
            config.referee_model,
            config.referee_api_key,
            max_concurrency=config.referee_max_concurrency,
            timeout=config.referee_timeout,
            max_retries=config.referee_max_retries,
            reasoning_lines=config.referee_reasoning_lines,
            attach_image=config.referee_attach_image,
        )
    if kind == "transformers":
        # A local model has no requests "in flight"; the concurrency knob becomes the generate batch size.
        return TransformersReferee(
            config.referee_model,
            batch_size=config.referee_max_concurrency,
            reasoning_lines=config.referee_reasoning_lines,
            attach_image=config.referee_attach_image,
        )
    raise ValueError(f"referee must be one of openai, transformers, rule, none; got {kind!r}.")


def build_r1_reward(config: "StableReinforceConfig") -> R1Reward:
    """The R1 reward `StableReinforceTrainer` uses when given no `reward_funcs`, built from the config's fields."""
    return R1Reward(
        build_referee(config),
        consistency_mode=config.consistency_mode,
        consistency_weight=config.consistency_weight,
        format_weight=config.format_weight,
        format_mode=config.format_mode,
        label_column=config.label_column,
    )
