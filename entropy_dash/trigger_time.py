"""When the trigger that started a scheduler job fired: what several schedulers on one store agree on.

Schedulers sharing a PostgreSQL store skip a source that another one synced since the current trigger
fired (``db.locks.synced_since``). A cron trigger fires at the same wall-clock time on every host (with
synchronised clocks), so "since" is that fire time; an interval trigger runs on each scheduler's own clock,
so "since" is one interval ago: the schedulers together sync the source about once per interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

#: how far back the last fire time of a cron line is looked for (a job starts at its fire time, or late)
WINDOWS = (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=400))


def last_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time of ``trigger`` at or before ``now``."""
    for window in WINDOWS:
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is None or fire > now:
            continue
        while (later := trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))) is not None \
                and later <= now:
            fire = later
        return fire
    return None


def trigger_since(trigger: object, every: float | None, now: datetime) -> datetime | None:
    """Since when a sync by another scheduler counts as this trigger's (None: not known, e.g. ``--once``)."""
    if isinstance(trigger, CronTrigger):
        return last_fire_time(trigger, now)
    if every:
        return now - timedelta(seconds=every)
    return None
