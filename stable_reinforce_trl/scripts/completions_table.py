"""TRL's completions table (`log_completions`) for vision prompts, logged to W&B with its images.

With TRL 1.16 and wandb 0.31, a vision GRPO run that logs completions to W&B hits two problems:
- TRL keeps each prompt as messages with the images stripped, whose content parts then have two shapes,
  `{"type": "image"}` and `{"type": "text", "text": ...}`. W&B cannot type that column: `wandb.Table`
  raises `TypeError: Data row contained incompatible types` and training stops at the first log.
- TRL puts a *list* of `wandb.Image` in each row's `image` cell, which W&B serializes as the string
  `"Image"`: the table holds no picture (a single `wandb.Image` per cell fares no better offline).
Here prompts become text (an `<image>` marker per image), which also serves the console and the parquet
copies TRL writes; each row's images (side by side) are logged as `completions/images` into the run folder, and
the table's `image` cell is that picture's path there.
Everything else about the table (when, which rows, the parquet files, the rich print-out) stays TRL's.
"""

from __future__ import annotations

from contextlib import contextmanager


def prompt_text(messages) -> str:
    if not isinstance(messages, list):
        return messages
    rendered = []
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, list):
            content = "".join(
                f"<{part['type']}>" if part.get("type") in ("image", "video") else part.get("text") or ""
                for part in content
            )
        rendered.append(content if len(messages) == 1 else f"{message.get('role')}: {content}")
    return "\n\n".join(rendered)


def side_by_side(images):
    """One picture per table cell: W&B shows a single image there, not a list."""
    from PIL import Image

    images = [image.convert("RGB") for image in images if image is not None]
    if len(images) <= 1:
        return images[0] if images else None
    canvas = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


class VisionCompletionsTable:
    """Mix in before a `GRPOTrainer` subclass (`class T(VisionCompletionsTable, StableReinforceTrainer)`)."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        prompts = self._logs["prompt"]
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, list):
                prompts[i] = prompt_text(prompt)
        return output

    def _wandb_table_rows(self) -> dict | None:
        import wandb

        if not (
            self.log_completions
            and self.accelerator.is_main_process
            and "wandb" in (self.args.report_to or [])
            and wandb.run is not None
            and self._logs["images"]
        ):
            return None
        # Read before TRL's log: it leaves the deques as they are, but the global step must be this log's.
        return {
            "step": [self.state.global_step] * len(self._logs["prompt"]),
            "prompt": list(self._logs["prompt"]),
            "completion": [prompt_text(c) for c in self._logs["completion"]],
            **{name: list(values) for name, values in self._logs["rewards"].items()},
            **{name: list(values) for name, values in self._logs["extra"].items()},
            "advantage": list(self._logs["advantages"]),
            "image": [side_by_side(images or []) for images in self._logs["images"]],
        }

    @contextmanager
    def _without_trl_wandb_table(self):
        # TRL logs its own table to every backend named in report_to at log time; the W&B metrics themselves
        # go through the WandbCallback, which is registered once and unaffected.
        report_to = self.args.report_to
        self.args.report_to = [backend for backend in report_to if backend != "wandb"]
        try:
            yield
        finally:
            self.args.report_to = report_to

    def log(self, logs, start_time=None):
        rows = self._wandb_table_rows()
        if rows is None:
            return super().log(logs, start_time)
        with self._without_trl_wandb_table():
            super().log(logs, start_time)
        import pandas as pd
        import wandb

        df = pd.DataFrame(rows)
        if self.log_unique_prompts:
            df = df[~df["prompt"].astype(str).duplicated()]
        # wandb 0.31 writes a `wandb.Image` inside a Table as the string "Image" and keeps the picture in its
        # artifact staging folder, outside the run: logged on their own, the images land in the run folder
        # (media/images/), and the table's image cell is the path of its row's picture there.
        images = {i: wandb.Image(image, caption=f"step {step}, row {i}")
                  for i, (step, image) in enumerate(zip(df["step"], df["image"])) if image is not None}  # fmt: skip
        wandb.log({"completions/images": list(images.values())}, commit=False)
        df["image"] = [images[i].to_json(wandb.run)["path"] if i in images else None for i in range(len(df))]
        wandb.log({"completions": wandb.Table(dataframe=df)})
