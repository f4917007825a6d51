"""How `threadweaver project` shows its progress: a bar on a terminal, JSON lines otherwise.

Each JSON line is one object: ``{"event": "progress", "applied": ..., "events_per_second": ...,
"eta_seconds": ..., ...}`` while it runs, ``{"event": "summary", ...}`` at the end (or
``{"event": "error", "error": ..., "exit_code": ...}``). The bar rewrites one line of the
terminal. Formatting is pure (`progress_fields`, `bar_line`, `summary_text`); `Reporter` writes.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from .application.projection_build import BuildProgress

__all__ = ["Reporter", "bar_line", "progress_fields", "summary_text"]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def progress_fields(progress: BuildProgress, now: float) -> dict[str, Any]:
    """The numbers of a progress line (and of the summary)."""
    return {
        "applied": progress.applied,
        "skipped": progress.skipped,
        "events_per_second": _round(progress.events_per_second(now)),
        "eta_seconds": _round(progress.eta_seconds(now)),
        "pass": progress.passes,
        "shards_done": progress.shards_done,
        "shards": progress.shards,
        "percent": round(100.0 * (1.0 if progress.done else progress.pass_fraction(now)), 1),
        "elapsed_seconds": _round(now - progress.started_at),
        "lag_seconds": _round(progress.lag_seconds, 3),
        "resumed": progress.resumed,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def bar_line(progress: BuildProgress, now: float, width: int = 30) -> str:
    """One terminal line: ``[#####.....]  42.0% 123,456 events 21,000/s ETA 00:12 pass 1``."""
    fields = progress_fields(progress, now)
    filled = int(width * fields["percent"] / 100)
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {fields['percent']:5.1f}% "
        f"{fields['applied']:,} events {fields['events_per_second'] or 0:,.0f}/s "
        f"ETA {_duration(fields['eta_seconds'])} "
        f"pass {fields['pass']} shards {fields['shards_done']}/{fields['shards']}"
    )


def summary_text(progress: BuildProgress, now: float) -> str:
    fields = progress_fields(progress, now)
    lag = fields["lag_seconds"]
    return (
        f"read model built: {fields['applied']:,} events applied, {fields['skipped']:,} skipped "
        f"(applied before) in {fields['elapsed_seconds']} s, "
        f"{fields['events_per_second'] or 0:,.0f} events/s, {fields['pass']} pass(es) over "
        f"{fields['shards']} shards; lag at the end at most {lag} s"
        + ("; resumed from the checkpoints" if progress.resumed else "")
    )


class Reporter:
    """Writes progress to `stream` (default stdout): a bar when it is a terminal, else JSON."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._bar_shown = False

    def _json(self, data: dict[str, Any]) -> None:
        self.stream.write(json.dumps(data, separators=(",", ":")) + "\n")
        self.stream.flush()

    def progress(self, progress: BuildProgress, now: float) -> None:
        if self.tty:
            self.stream.write("\r" + bar_line(progress, now) + "\x1b[K")
            self.stream.flush()
            self._bar_shown = True
        else:
            self._json({"event": "progress", **progress_fields(progress, now)})

    def _end_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False

    def summary(self, progress: BuildProgress, now: float) -> None:
        if self.tty:
            self.progress(progress, now)
            self._end_bar()
            self.stream.write(summary_text(progress, now) + "\n")
            self.stream.flush()
        else:
            self._json({"event": "summary", **progress_fields(progress, now)})

    def error(self, message: str, exit_code: int) -> None:
        """The error as a JSON line (not on a terminal: the caller prints it to stderr)."""
        self._end_bar()
        if not self.tty:
            self._json({"event": "error", "error": message, "exit_code": exit_code})
