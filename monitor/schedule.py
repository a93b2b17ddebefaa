"""Pure: the digest schedule and quiet-hours syntax of channels (SPEC §5).

A digest schedule is `hourly`, `daily HH:MM`, `weekly DDD HH:MM` or a 5-field crontab line
(0 and 7 = Sunday), always in the channel's time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from apscheduler.triggers.cron import CronTrigger

_HHMM = r"([01]\d|2[0-3]):([0-5]\d)"
_DAILY = re.compile(rf"daily {_HHMM}")
_WEEKLY = re.compile(rf"weekly (mon|tue|wed|thu|fri|sat|sun) {_HHMM}")
_QUIET = re.compile(rf"{_HHMM}-{_HHMM}")
# crontab counts weekdays from Sunday = 0 (and 7); APScheduler 3 counts from Monday = 0.
_CRON_DOW = {
    "0": "sun",
    "1": "mon",
    "2": "tue",
    "3": "wed",
    "4": "thu",
    "5": "fri",
    "6": "sat",
    "7": "sun",
}


def digest_trigger(spec: str, tz: tzinfo) -> CronTrigger:
    """The trigger for a digest schedule; ValueError with a sentence when it is not one."""
    if spec == "hourly":
        return CronTrigger(minute=0, timezone=tz)
    if match := _DAILY.fullmatch(spec):
        return CronTrigger(hour=int(match[1]), minute=int(match[2]), timezone=tz)
    if match := _WEEKLY.fullmatch(spec):
        return CronTrigger(
            day_of_week=match[1], hour=int(match[2]), minute=int(match[3]), timezone=tz
        )
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(
            f'{spec!r} is not a digest schedule; use "hourly", "daily HH:MM", '
            '"weekly DDD HH:MM" or a 5-field crontab line'
        )
    minute, hour, day, month, dow = fields
    dow = _crontab_weekdays(dow)
    try:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=tz
        )
    except ValueError as exc:
        raise ValueError(f"{spec!r} is not a valid crontab line ({exc})") from None


def _crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (Sunday = 0 or 7) as an explicit APScheduler day list, so
    ranges and steps keep crontab's meaning (`0-6`, `*/2`, `1-5`); names pass through."""
    days: list[str] = []
    for element in field.lower().split(","):
        match = re.fullmatch(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?", element)
        if not match:
            days.append(element)  # a name like mon or mon-fri: APScheduler reads it as crontab does
            continue
        start, end, step = match[1], match[2], int(match[3] or 1)
        low, high = (0, 6) if start == "*" else (int(start), int(end or start))
        if high > 7 or low > high or step < 1:
            raise ValueError(f"day of week {element!r} is out of range; use 0-7 (0 and 7 = Sunday)")
        days.extend(_CRON_DOW[str(n)] for n in range(low, high + 1, step))
    return ",".join(dict.fromkeys(days))


def last_fire_before(trigger: CronTrigger, since: datetime, now: datetime) -> datetime | None:
    """The latest scheduled time in (since, now], or None when none has passed."""
    fire = trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
    last = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return last


@dataclass(frozen=True, kw_only=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        """True inside the window; a window may cross midnight."""
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, moment: datetime) -> datetime:
        """When the window containing `moment` (aware, local) ends."""
        end = moment.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        return end if end > moment else end + timedelta(days=1)


def parse_quiet_hours(spec: str) -> QuietHours:
    match = _QUIET.fullmatch(spec) if isinstance(spec, str) else None
    if not match:
        raise ValueError(f'{spec!r} is not a quiet-hours window; write "HH:MM-HH:MM"')
    if match.group(1, 2) == match.group(3, 4):
        raise ValueError(f"{spec!r} is an empty quiet-hours window; start and end must differ")
    return QuietHours(
        start=time(int(match[1]), int(match[2])), end=time(int(match[3]), int(match[4]))
    )
