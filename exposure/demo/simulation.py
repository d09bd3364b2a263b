"""The demo's world: who met whom, when, for how long, how close; and what phones must find.

Everything here is pure arithmetic on a seeded random generator: no key, no cryptography,
no server. :func:`plan_world` draws the encounters of ``phones`` people over ``days`` UTC
days and who tests positive; :func:`scan_schedule` turns the encounters into what each phone
hears in each of its scans; :func:`expected_exposures` computes, from that schedule alone,
the exposure windows and notifications the phones must find once the positives' keys are
published. It never touches an RPI: it is the ground truth the matching code path under test
(:mod:`exposure.client`) is checked against, so it must not share that path.

The model, kept simple but realistic:

- Every phone scans every five minutes (:data:`SCAN_INTERVAL`) on a grid shared by all, and
  hears a nearby phone once per scan; each scan stands for the five minutes since the last.
  An encounter is a run of consecutive scans in which two phones hear each other, both
  ways, at the same attenuation.
- Each day each phone starts a Poisson number of encounters (mean :data:`CONTACTS_PER_DAY`)
  with phones drawn at random, between 07:00 and 23:00 UTC: some go past midnight.
- Durations: mostly a few minutes, some an hour or more (log-normal, 1 to 36 scans).
- Attenuations: a base level per encounter (close, the same room, or across a hall) plus a
  few dB of noise per scan, as Bluetooth readings wander; 30 to 100 dB.
- A share of the phones tests positive; each gets a symptom onset a few days back.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

__all__ = [
    "CONTACTS_PER_DAY",
    "MAX_DAYS",
    "SCAN_INTERVAL",
    "Encounter",
    "ExpectedExposures",
    "ExposureRule",
    "Heard",
    "World",
    "expected_exposures",
    "plan_world",
    "scan_schedule",
]

#: Phones scan this often, all on one grid.
SCAN_INTERVAL = timedelta(minutes=5)
#: Encounters a phone starts per day, on average.
CONTACTS_PER_DAY = 2.0
#: Phones keep (and upload) 14 days of keys: a longer demo would publish fewer than it met.
MAX_DAYS = 14
#: The longest encounter, in scans (three hours).
MAX_SCANS = 36
#: A scan's time counts since the previous scan, at most this much (the SDK's default).
MAX_SCAN_GAP = timedelta(minutes=10)
#: A window holds at most 30 minutes of one key's sightings (GAEN v2).
WINDOW_LENGTH = timedelta(minutes=30)
# Base attenuations (dB) and how often each kind of encounter happens.
_CLOSE, _ROOM, _HALL = (40, 55), (56, 70), (71, 90)
_KIND_WEIGHTS = (0.25, 0.45, 0.30)
_NOISE_DB = 3


@dataclass(frozen=True, slots=True)
class Encounter:
    """Phones ``first`` and ``second`` heard each other in consecutive scans from ``start``.

    ``attenuations`` holds one value (dB) per scan, the same both ways.
    """

    first: int
    second: int
    start: datetime
    attenuations: tuple[int, ...]

    def scan_times(self) -> list[datetime]:
        return [self.start + number * SCAN_INTERVAL for number in range(len(self.attenuations))]


@dataclass(frozen=True)
class World:
    """A seeded plan: the phones, the days they met on, their encounters, the positives.

    ``days`` are the UTC days ``first_day .. first_day + day_count - 1``; ``onsets`` maps
    each positive phone to its symptom onset day.
    """

    phones: int
    first_day: date
    day_count: int
    encounters: tuple[Encounter, ...]
    onsets: Mapping[int, date] = field(default_factory=dict)

    @property
    def positives(self) -> list[int]:
        return sorted(self.onsets)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: exact, and fast for the small means used here.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _attenuations(rng: random.Random, scans: int) -> tuple[int, ...]:
    low, high = rng.choices((_CLOSE, _ROOM, _HALL), weights=_KIND_WEIGHTS)[0]
    base = rng.randint(low, high)
    return tuple(min(max(base + rng.randint(-_NOISE_DB, _NOISE_DB), 30), 100) for _ in range(scans))


def plan_world(
    *,
    phones: int,
    days: int,
    today: date,
    seed: int,
    positive_share: float = 0.02,
    contacts_per_day: float = CONTACTS_PER_DAY,
) -> World:
    """Draw who meets whom over the ``days`` UTC days before ``today``, and who is positive.

    At least one phone tests positive when there are two or more phones. Raises
    :class:`ValueError` for fewer than 2 phones, days outside 1..14, or a share outside 0..1.
    """
    if phones < 2:
        raise ValueError("a demo needs at least two phones")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    if not 0 <= positive_share <= 1:
        raise ValueError("the positive share must lie within 0..1")
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    first_day = today - timedelta(days=days)
    encounters: list[Encounter] = []
    slots_per_day = (23 - 7) * 12  # 07:00 to 23:00 on the five-minute grid
    for offset in range(days):
        morning = datetime.combine(first_day + timedelta(days=offset), time(7), tzinfo=UTC)
        for phone in range(phones):
            for _ in range(_poisson(rng, contacts_per_day)):
                other = rng.randrange(phones - 1)
                other += other >= phone  # anyone but the phone itself
                start = morning + rng.randrange(slots_per_day) * SCAN_INTERVAL
                scans = min(MAX_SCANS, max(1, round(rng.lognormvariate(1.0, 0.9))))
                # Encounters end before the demo's "today": its keys are not published yet.
                last = datetime.combine(today, time(0), tzinfo=UTC) - SCAN_INTERVAL
                scans = min(scans, int((last - start) / SCAN_INTERVAL) + 1)
                encounters.append(Encounter(phone, other, start, _attenuations(rng, scans)))
    count = max(1, round(phones * positive_share)) if positive_share > 0 else 0
    positives = rng.sample(range(phones), count)
    onsets = {phone: today - timedelta(days=rng.randint(1, 4)) for phone in positives}
    return World(phones, first_day, days, tuple(encounters), onsets)


class Heard(NamedTuple):
    """One phone's reading of another in one scan."""

    sender: int
    attenuation_db: int


def scan_schedule(world: World) -> dict[int, dict[datetime, list[Heard]]]:
    """What each phone hears in its scans, in time order.

    A phone scans every five minutes all day; kept are the scans that heard someone and,
    before each run of them, the scan that heard nobody (it is what makes the next scan
    count for five minutes rather than the ten-minute cap). Two encounters of the same pair
    may overlap; a phone hears another once per scan, so the first encounter's reading of
    that scan is kept.
    """
    # Worked on scan numbers since the first day (plain integers hash and sort far faster
    # than datetimes), turned into moments once each at the end.
    origin = datetime.combine(world.first_day, time(0), tzinfo=UTC)
    step = int(SCAN_INTERVAL.total_seconds())
    heard: dict[int, dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for encounter in world.encounters:
        first_scan = int((encounter.start - origin).total_seconds()) // step
        for number, attenuation in enumerate(encounter.attenuations, start=first_scan):
            heard[encounter.first][number].setdefault(encounter.second, attenuation)
            heard[encounter.second][number].setdefault(encounter.first, attenuation)
    moments: dict[int, datetime] = {}
    schedule: dict[int, dict[datetime, list[Heard]]] = {}
    for phone, scans in sorted(heard.items()):
        numbers = set(scans)
        numbers.update([number - 1 for number in scans])
        timeline: dict[datetime, list[Heard]] = {}
        for number in sorted(numbers):
            moment = moments.get(number)
            if moment is None:
                moment = moments[number] = origin + number * SCAN_INTERVAL
            readings = scans.get(number)
            timeline[moment] = (
                [Heard(sender, db) for sender, db in sorted(readings.items())] if readings else []
            )
        schedule[phone] = timeline
    return schedule


@dataclass(frozen=True)
class ExposureRule:
    """How the demo's phones weigh contacts: GAEN v2's arithmetic with the demo's values.

    ``attenuation_weight`` maps a typical attenuation to its bucket's weight,
    ``infectiousness_weight`` maps days since onset to a weight (0: no window at all),
    ``report_weight`` is the weight of a confirmed test; a phone is notified when a day's
    sum of window scores reaches ``notify_at``.
    """

    thresholds_db: tuple[int, int, int]
    bucket_weights: tuple[float, float, float, float]
    infectiousness_weight: Mapping[int, float]
    report_weight: float
    notify_at: float

    def attenuation_weight(self, attenuation_db: int) -> float:
        for threshold, weight in zip(self.thresholds_db, self.bucket_weights, strict=False):
            if attenuation_db <= threshold:
                return weight
        return self.bucket_weights[3]


@dataclass(frozen=True)
class ExpectedExposures:
    """What the phones must find: windows per phone, and who must be notified."""

    windows: Mapping[int, int]
    notified: frozenset[int]
    met_a_positive: frozenset[int]

    @property
    def window_count(self) -> int:
        return sum(self.windows.values())


def _seconds(moment: datetime, previous: datetime | None) -> int:
    if previous is None:
        return int(SCAN_INTERVAL.total_seconds())
    return int(min(moment - previous, MAX_SCAN_GAP).total_seconds())


def expected_exposures(
    world: World,
    schedule: Mapping[int, Mapping[datetime, Sequence[Heard]]],
    rule: ExposureRule,
    *,
    published: Sequence[int] | None = None,
) -> ExpectedExposures:
    """The ground truth: for every phone, its exposure windows with the ``published``
    phones (default: every positive) and whether some day's score reaches the rule.

    A sender's key is its UTC day; a window is one key's scans within 30 minutes of the
    window's first scan; a scan counts for the time since the phone's previous scan (of
    anyone), capped at ten minutes; its score weighs that time by attenuation bucket, the
    sender's infectiousness on that day, and the confirmed-test weight.
    """
    senders = set(world.onsets if published is None else published)
    windows: dict[int, int] = {}
    notified: set[int] = set()
    met: set[int] = set()
    for phone, scans in schedule.items():
        previous: datetime | None = None
        # (sender, key day) -> [(scan time, seconds, attenuation)]
        by_key: dict[tuple[int, date], list[tuple[datetime, int, int]]] = defaultdict(list)
        for moment, readings in scans.items():
            seconds = _seconds(moment, previous)
            previous = moment
            for reading in readings:
                if reading.sender in senders:
                    key = (reading.sender, moment.date())
                    by_key[key].append((moment, seconds, reading.attenuation_db))
        daily: dict[date, float] = defaultdict(float)
        count = 0
        for (sender, day), sightings in by_key.items():
            met.add(phone)
            infectiousness = rule.infectiousness_weight.get((day - world.onsets[sender]).days)
            if infectiousness is None:
                continue
            started: datetime | None = None
            score = 0.0
            for moment, seconds, attenuation in sightings:
                if started is not None and moment - started >= WINDOW_LENGTH:
                    daily[started.date()] += score * infectiousness * rule.report_weight
                    count += 1
                    started, score = None, 0.0
                if started is None:
                    started = moment
                score += seconds * rule.attenuation_weight(attenuation)
            if started is not None:
                daily[started.date()] += score * infectiousness * rule.report_weight
                count += 1
        if count:
            windows[phone] = count
        if any(total >= rule.notify_at for total in daily.values()):
            notified.add(phone)
    return ExpectedExposures(windows, frozenset(notified), frozenset(met))
