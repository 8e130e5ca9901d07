"""Durations and end times as a user writes them: "45m", "2h", "90s", "1h30m"; "14:30", "2026-12-03T14:30".

One parser for every option that takes a time (`run --time-limit`, `run --deadline`, `calibrate
--time-limit`), so a number always carries its unit: a bare "30" is refused, never guessed.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


def parse_duration(text: str, option: str = "--time-limit") -> float:
    """'1h30m' -> 5400.0 seconds; units h, m and s, each at most once and in that order."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    if not str(text).strip() or match is None:
        raise ValueError(f"{option} takes a duration with its unit, e.g. 90s, 45m, 2h or 1h30m; got {text!r}")
    seconds = sum(float(value) * scale for value, scale in zip(match.groups(), UNITS.values()) if value)
    if seconds <= 0:
        raise ValueError(f"{option} must be longer than zero, got {text!r}")
    return seconds


def parse_deadline(text: str, now: datetime | None = None) -> datetime:
    """--deadline: a duration from `now` ('45m'), a time of day ('14:30': its next occurrence, so
    after midnight when that time has passed today) or an ISO date and time ('2026-12-03T14:30').
    Returns the end as a local datetime; an end already past is refused."""
    now = now or datetime.now()
    text = str(text).strip()
    if clock := _CLOCK.fullmatch(text):
        hour, minute = int(clock[1]), int(clock[2])
        if hour > 23 or minute > 59:
            raise ValueError(f"--deadline: {text!r} is not a time of day (HH:MM, 00:00 to 23:59)")
        end = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return end if end > now else end + timedelta(days=1)
    if "T" in text or "-" in text:
        try:
            end = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--deadline: {text!r} is not an ISO date and time such as 2026-12-03T14:30") from None
        end = end.astimezone().replace(tzinfo=None) if end.tzinfo else end  # local time, as `now`
        if end <= now:
            raise ValueError(f"--deadline {text} has already passed (now {now:%Y-%m-%d %H:%M})")
        return end
    try:
        return now + timedelta(seconds=parse_duration(text, "--deadline"))
    except ValueError:
        raise ValueError(f"--deadline takes a duration with its unit (90s, 45m, 2h, 1h30m) or an end time "
                         f"(14:30, 2026-12-03T14:30); got {text!r}") from None


def format_duration(seconds: float) -> str:
    """5400 -> '1h30m', 95 -> '1m35s', 12.3 -> '12s': how estimates and time left are printed."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
