"""Row validation: every bad input names its file, line or row, field, and the fix.

Loaders either raise `InvalidRowError` at the first bad row or, with `skip_invalid`, record it
in a `SkipReport` (counts per reason plus the first few messages) that is always printed. The
commands collect every bad row instead and raise one `InvalidRowsError` listing them
(`loaders.collect_pairs`), so a file is fixed in one pass.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image as PILImage

from ..cli import UserError
from .pairs import PreferencePair

logger = logging.getLogger(__name__)

SKIP_HINT = "or pass skip_invalid=True (--skip-invalid) to drop such rows"


class InvalidRowError(UserError, ValueError):
    """A row that cannot become a preference pair. `reason` is a short key ("missing image", ...).

    `row_message` is the message without the skip hint: what a report of skipped rows prints, since
    suggesting `--skip-invalid` for a row it already skipped says nothing."""

    def __init__(self, file: str, where: str, field_name: str, reason: str, detail: str, fix: str):
        self.file, self.where, self.field, self.reason = file, where, field_name, reason
        self.row_message = f"{file}, {where}, field '{field_name}': {reason}: {detail}. Fix: {fix}"
        super().__init__(f"{self.row_message}, {SKIP_HINT}.")


class OptionError(UserError, ValueError):
    """An option that cannot work (an unknown format, a bad column mapping, ...), named with its fix."""


class SourceNotFoundError(UserError, FileNotFoundError):
    """A source that is no file, folder or reachable Hub dataset."""


class InvalidRowsError(UserError, ValueError):
    """Every invalid row of a source (the first `max_examples` spelled out), raised once by the commands."""

    def __init__(self, source: str, report: "SkipReport", valid: int, fix: str):
        self.source, self.report = source, report
        listed = "\n".join(f"  - {example}" for example in report.examples)
        more = report.total - len(report.examples)
        super().__init__(
            f"{report.total} row(s) of {source} are invalid ({dict(report.counts)}):\n{listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + f"\nFix them ({fix}), or pass --skip-invalid to use the other {valid} row(s) (the skipped count is "
            "reported)."
        )


@dataclass
class SkipReport:
    """Rows dropped under `skip_invalid`, by reason, with the first messages kept for the printout."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, error: InvalidRowError) -> None:
        self.counts[error.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(error.row_message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no invalid rows"
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.counts.most_common())
        lines = [f"skipped {self.total} invalid row(s) ({reasons})", *(f"  e.g. {e}" for e in self.examples)]
        return "\n".join(lines)

    def log(self) -> None:
        if self.total:
            logger.warning(self.summary())


class RowContext:
    """Where a row came from, to build errors that point at it."""

    def __init__(self, file: str, where: str):
        self.file, self.where = file, where

    def error(self, field_name: str, reason: str, detail: str, fix: str) -> InvalidRowError:
        return InvalidRowError(self.file, self.where, field_name, reason, detail, fix)


IMAGE_CHECKS = ("open", "exists", "none")


def check_image(path, ctx: RowContext, field_name: str, check: str) -> None:
    """`open` reads the header (catches truncated or non-image files cheaply), `exists` only stats."""
    if check == "none" or not isinstance(path, str):
        return
    if not os.path.isfile(path):
        raise ctx.error(field_name, "missing image", f"no file at {path}",
                        "check the path, or give the folder relative paths start from (image_root / --image-root)")
    if check == "open":
        try:
            with PILImage.open(path) as image:
                image.size  # noqa: B018 - the header parse is the check
        except Exception as exc:  # PIL raises several types for bad files
            raise ctx.error(field_name, "unreadable image", f"{path} ({type(exc).__name__}: {exc})",
                            "replace the file with a valid PNG/JPEG") from None


def check_pair(pair: PreferencePair, ctx: RowContext, fields: dict[str, str], check_images: str = "open") -> None:
    """Refuse pairs a judge cannot learn from. `fields` maps pair attributes to the source's column names."""
    for name in ("question", "chosen", "rejected"):
        value = getattr(pair, name)
        if not isinstance(value, str) or not value.strip():
            raise ctx.error(fields[name], "empty field", f"{name} is {value!r}", f"give a non-empty {name} text")
    if pair.chosen.strip() == pair.rejected.strip():
        raise ctx.error(f"{fields['chosen']}/{fields['rejected']}", "identical responses",
                        "both responses are the same text, so no preference can be learned", "remove the row")
    for image in pair.images:
        check_image(image, ctx, fields["images"], check_images)
    for frame in pair.video or ():
        check_image(frame, ctx, fields["images"], check_images)
