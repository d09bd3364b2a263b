"""``exposure demo``: a whole country in two minutes, over real HTTP, with a real server.

The demo plays every part as it is played for real, and nothing more:

1. **Server.** A real ``exposure serve`` subprocess on a free port, on a fresh temporary
   data directory (or the one given), SQLite by default or the PostgreSQL URL given. It runs
   with ``EXPOSURE_KEYSERVER_THROWAWAY_DEMO_TIMING`` (docs/privacy.md): keys keep their
   publish time to the second and an export window closes 2 s after it ends, so the demo
   sees its keys exported within seconds instead of hours, with every other rule as in
   production (embargo, padding, signatures). Scheduled jobs are off: the demo runs them.
2. **Operator.** ``exposure admin bootstrap`` (a realm, keys, trust, an app, a signing
   key) and ``exposure admin export-config add`` for a series of 5-second windows of its
   own, through the CLI as an operator would.
3. **People.** A seeded plan (:mod:`exposure.demo.simulation`) of who met whom; SDK devices
   that broadcast and record accordingly (:mod:`exposure.demo.phones`).
4. **Lab.** ``POST /api/issue`` a code for each phone that tested positive.
5. **Uploads.** Each positive phone uploads through :class:`~exposure.client.Uploader`;
   some other phones send chaff.
6. **Export.** Once the window of the last upload has closed, ``exposure jobs run
   export-batches`` and ``export-worker``, as of the real clock.
7. **Download.** Every phone downloads index.txt and every file, verifies the signatures
   with the key bootstrap printed, and matches its own sightings
   (:class:`~exposure.client.ExportSync`); the RPIs of each file are derived once for all.
8. **Risk.** Every phone computes its exposure windows and daily summaries
   (:mod:`exposure.client.risk`); the totals are compared with the plan's ground truth.

It speaks to the server only over HTTP and through the ``exposure`` CLI: an import contract
keeps it away from the services' code and the database.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

from exposure.client import (
    ClientError,
    Device,
    ExportSigningKey,
    ExportSource,
    ExportSync,
    Infectiousness,
    ReportType,
    RiskModel,
    ServerConfig,
    SightingIndex,
    SyncReport,
    SyncState,
    Uploader,
    daily_summaries,
    exposure_windows,
)
from exposure.demo.phones import PhoneMatcher, SharedDerivation, build_phones, scan_moments
from exposure.demo.simulation import (
    ExpectedExposures,
    ExposureRule,
    World,
    expected_exposures,
    plan_world,
    scan_schedule,
)
from exposure.launcher import ServerDidNotStart, plan_server, start_server

__all__ = [
    "DEMO_EXPORT_PERIOD",
    "DemoFailed",
    "DemoOptions",
    "DemoReport",
    "Reporter",
    "demo_risk",
    "run_demo",
]

Item = TypeVar("Item")

#: The demo's export windows: short, so the last upload's window closes seconds later.
DEMO_EXPORT_PERIOD = timedelta(seconds=5)
#: The demo's export series (its own, next to bootstrap's 4-hour ``v1``).
DEMO_EXPORT_ROOT = "demo"
#: After a window ends, the server batches it this much later: the setting's delay
#: (``DEMO_CLOSE_DELAY`` in keyserver/settings.py, which the demo, an outsider, may not
#: import). Were it longer, the file would miss keys and the demo would say found != expected.
_CLOSE_DELAY = timedelta(seconds=2)
# The demo waits a little more, so that a second of clock rounding never matters.
_CLOSE_MARGIN = timedelta(seconds=1)
#: One phone in this many of those that did not test positive sends chaff.
_CHAFF_EVERY = 20
#: Phones downloading at once.
_DOWNLOAD_THREADS = 4
_SERVER_START_TIMEOUT = 60.0
_CLI_TIMEOUT = 300.0


class DemoFailed(Exception):  # noqa: N818 - names the event
    """A step of the demo could not be done (the server did not start, a command failed)."""


class Reporter(Protocol):
    """What the demo tells about its progress (the CLI shows it with rich)."""

    def step(self, description: str) -> None: ...

    def track(
        self, items: Iterable[Item], description: str, total: int | None = None
    ) -> Iterator[Item]: ...


class _Silent:
    """Reports nothing (the demo as a library call, in tests)."""

    def step(self, description: str) -> None:  # noqa: ARG002 - the protocol's signature
        return None

    def track(
        self,
        items: Iterable[Item],
        description: str,  # noqa: ARG002 - the protocol's signature
        total: int | None = None,  # noqa: ARG002
    ) -> Iterator[Item]:
        yield from items


@dataclass(frozen=True)
class DemoOptions:
    """What to simulate and where. ``data_dir`` None: a fresh temporary one, removed after."""

    phones: int = 1_000
    days: int = 14
    seed: int = 1
    positive_share: float = 0.02
    data_dir: Path | None = None
    database_url: str | None = None
    exposure_command: tuple[str, ...] = ()


@dataclass
class DemoReport:
    """What the demo found, what the plan says it must find, and each step's seconds."""

    phones: int
    positives: int
    keys_published: int = 0
    files_exported: int = 0
    exposure_windows_found: int = 0
    exposure_windows_expected: int = 0
    notified_phones_found: int = 0
    notified_phones_expected: int = 0
    #: Phones notified that never heard a positive phone at all.
    false_notifications: int = 0
    #: Phones notified but not expected, or expected but not notified.
    notified_phones_mismatched: int = 0
    refused_files: int = 0
    chaff_requests: int = 0
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Found what the plan says, notified nobody who never met a positive, refused none."""
        return (
            self.exposure_windows_found == self.exposure_windows_expected
            and self.notified_phones_found == self.notified_phones_expected
            and self.false_notifications == 0
            and self.notified_phones_mismatched == 0
            and self.refused_files == 0
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "phones": self.phones,
            "positives": self.positives,
            "keys_published": self.keys_published,
            "files_exported": self.files_exported,
            "exposure_windows": {
                "found": self.exposure_windows_found,
                "expected": self.exposure_windows_expected,
            },
            "notified_phones": {
                "found": self.notified_phones_found,
                "expected": self.notified_phones_expected,
            },
            "false_notifications": self.false_notifications,
            "notified_phones_mismatched": self.notified_phones_mismatched,
            "refused_files": self.refused_files,
            "chaff_requests": self.chaff_requests,
            "ok": self.ok,
            "steps_seconds": {name: round(seconds, 3) for name, seconds in self.steps.items()},
        }


# ---- the risk model the demo's health authority configures --------------------------------

_THRESHOLDS = (55, 63, 73)
_BUCKET_WEIGHTS = (1.5, 1.0, 0.5, 0.0)
_HIGH_DAYS = range(-2, 6)
_INFECTIOUSNESS_WEIGHTS = {Infectiousness.STANDARD: 1.0, Infectiousness.HIGH: 1.5}
#: A day whose windows sum to 15 weighted minutes notifies.
_NOTIFY_AT = 15 * 60.0


def demo_risk() -> tuple[RiskModel, ExposureRule]:
    """The health authority's model for the phones, and the same numbers for the ground
    truth (which computes with them on its own, never through the SDK)."""
    days = {
        day: Infectiousness.HIGH if day in _HIGH_DAYS else Infectiousness.STANDARD
        for day in range(-10, 11)
    }
    model = RiskModel(
        attenuation_thresholds_db=_THRESHOLDS,
        attenuation_weights=_BUCKET_WEIGHTS,
        infectiousness_for_days_since_onset=days,
        infectiousness_weights=_INFECTIOUSNESS_WEIGHTS,
        report_type_weights={ReportType.CONFIRMED_TEST: 1.0},
    )
    rule = ExposureRule(
        thresholds_db=_THRESHOLDS,
        bucket_weights=_BUCKET_WEIGHTS,
        infectiousness_weight={day: _INFECTIOUSNESS_WEIGHTS[level] for day, level in days.items()},
        report_weight=1.0,
        notify_at=_NOTIFY_AT,
    )
    return model, rule


# ---- the server and the operator's CLI ------------------------------------------------------


@dataclass
class _Deployment:
    base_url: str
    environment: dict[str, str]
    command: tuple[str, ...]

    def cli(self, *arguments: str) -> dict[str, Any]:
        """Run ``exposure ARGUMENTS --json``-style and return its JSON; DemoFailed if not 0."""
        completed = subprocess.run(  # noqa: S603 - our own command, fixed arguments
            [*self.command, *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=_CLI_TIMEOUT,
            check=False,
        )
        if completed.returncode != 0:
            last = (completed.stderr or completed.stdout).strip().splitlines()
            raise DemoFailed(
                f"exposure {' '.join(arguments[:3])} failed: {last[-1] if last else ''}"
            )
        parsed: dict[str, Any] = json.loads(completed.stdout)
        return parsed


@contextmanager
def _server(options: DemoOptions) -> Iterator[_Deployment]:
    with ExitStack() as resources:
        if options.data_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="exposure-demo-")
            data_dir = Path(resources.enter_context(temporary))
        else:
            data_dir = options.data_dir
            data_dir.mkdir(parents=True, exist_ok=True)
        plan = plan_server(
            data_dir,
            # In the data directory: kept with it when the caller named one.
            log_path=data_dir / "demo-server.log",
            database_url=options.database_url,
            # The demo runs the jobs itself, when the window it waits for has closed.
            scheduled_jobs=False,
            throwaway_demo_timing=True,
            exposure=options.exposure_command,
        )
        try:
            resources.enter_context(start_server(plan, start_timeout=_SERVER_START_TIMEOUT))
        except ServerDidNotStart as error:
            if error.exit_code is not None:
                raise DemoFailed(f"the server exited early: {error.last_log_line}") from None
            raise DemoFailed(
                f"the server did not answer within {_SERVER_START_TIMEOUT:.0f} s"
            ) from None
        yield _Deployment(plan.base_url, plan.environment, plan.exposure)


# ---- the demo ----------------------------------------------------------------------------


class _Steps:
    """Each step's wall-clock seconds, in the order the steps ran."""

    def __init__(self, report: DemoReport, reporter: Reporter) -> None:
        self._report = report
        self._reporter = reporter

    @contextmanager
    def step(self, name: str, description: str) -> Iterator[None]:
        self._reporter.step(description)
        started = time.perf_counter()
        try:
            yield
        finally:
            self._report.steps[name] = time.perf_counter() - started


def run_demo(
    options: DemoOptions,
    reporter: Reporter | None = None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DemoReport:
    """Run the whole demo; raises :class:`DemoFailed` if a step cannot be done.

    The phones met on the days before ``clock()``'s date. The uploads, the wait for the
    export window and the downloads run on the real clock, as the server does.
    """
    shown = reporter or _Silent()
    model, rule = demo_risk()
    now = clock()
    world = plan_world(
        phones=options.phones,
        days=options.days,
        today=now.date(),
        seed=options.seed,
        positive_share=options.positive_share,
    )
    report = DemoReport(phones=options.phones, positives=len(world.positives))
    steps = _Steps(report, shown)
    with ExitStack() as resources:
        with steps.step("start_server", "starting exposure serve"):
            server = resources.enter_context(_server(options))
        with steps.step("bootstrap", "bootstrap: realm, keys, trust, export series"):
            setup = _bootstrap(server)
        with steps.step("simulate", "simulating"):
            schedule = scan_schedule(world)
            truth = expected_exposures(world, schedule, rule)
            total = scan_moments(schedule)
            moments = iter(
                shown.track(
                    range(total),
                    f"{options.phones} phones meeting over {options.days} days",
                    total=total,
                )
            )
            phones = build_phones(
                options.phones,
                schedule,
                seed=options.seed,
                on_scan_moment=lambda: next(moments, None),
            )
            for _ in moments:  # closes the bar
                pass
        http = resources.enter_context(httpx.Client(timeout=30))
        with steps.step("issue_codes", "lab: issuing codes"):
            codes = _issue_codes(http, server, setup, world, shown)
        with steps.step("upload", "positive phones uploading"):
            published, chaff = _upload(http, server, setup, world, phones, codes, now, shown)
            last_upload = datetime.now(UTC)
        report.keys_published, report.chaff_requests = published, chaff
        with steps.step("wait_for_window", "waiting for the export window to close"):
            _wait_for_window(last_upload)
        with steps.step("export", "exporting: export-batches, export-worker"):
            server.cli("jobs", "run", "export-batches")
            server.cli("jobs", "run", "export-worker")
        with steps.step("download_and_match", "phones downloading, verifying, matching"):
            states, refused, files = _download(http, server, setup, phones, shown)
        report.files_exported, report.refused_files = files, refused
    with steps.step("risk", "phones computing exposure windows"):
        _score(report, states, model, truth, now.date(), shown)
    return report


def _bootstrap(server: _Deployment) -> dict[str, Any]:
    setup = server.cli("admin", "bootstrap", "--json")
    server.cli(
        "admin", "export-config", "add", DEMO_EXPORT_ROOT,
        "--region", setup["export_region"],
        "--period", f"{int(DEMO_EXPORT_PERIOD.total_seconds())}s",
        "--signing-key", setup["export_key_id"],
        "--json",
    )  # fmt: skip
    setup["demo_export_root"] = DEMO_EXPORT_ROOT
    return setup


def _issue_codes(
    http: httpx.Client,
    server: _Deployment,
    setup: Mapping[str, Any],
    world: World,
    shown: Reporter,
) -> dict[int, str]:
    codes: dict[int, str] = {}
    for phone in shown.track(world.positives, "lab: issuing codes", total=len(world.positives)):
        answer = http.post(
            f"{server.base_url}/api/issue",
            json={"testType": "confirmed", "symptomDate": world.onsets[phone].isoformat()},
            headers={"X-API-Key": setup["admin_api_key"]},
        )
        if answer.status_code != 200:
            raise DemoFailed(f"the lab could not issue a code: HTTP {answer.status_code}")
        codes[phone] = answer.json()["code"]
    return codes


def _upload(
    http: httpx.Client,
    server: _Deployment,
    setup: Mapping[str, Any],
    world: World,
    phones: list[Device],
    codes: Mapping[int, str],
    now: datetime,
    shown: Reporter,
) -> tuple[int, int]:
    config = ServerConfig(
        verification_url=server.base_url,
        keyserver_url=server.base_url,
        api_key=setup["device_api_key"],
        health_authority_id=setup["health_authority_id"],
    )
    published = 0
    for phone in shown.track(world.positives, "positive phones uploading", total=len(codes)):
        uploader = Uploader(config, http=http)
        try:
            outcome = uploader.upload(codes[phone], phones[phone].keys_for_upload(now))
        except ClientError as error:
            raise DemoFailed(f"an upload was refused: {error.code}") from None
        published += outcome.published.inserted_exposures
    chaff = 0
    positives = set(world.positives)
    for phone in range(0, world.phones, _CHAFF_EVERY):
        if phone not in positives:
            statuses = Uploader(config, http=http).send_chaff().statuses
            chaff += sum(1 for status in statuses if status is not None)
    return published, chaff


def _wait_for_window(last_upload: datetime) -> None:
    period = DEMO_EXPORT_PERIOD.total_seconds()
    window_end = (last_upload.timestamp() // period + 1) * period
    closes = window_end + (_CLOSE_DELAY + _CLOSE_MARGIN).total_seconds()
    time.sleep(max(0.0, closes - time.time()))


def _source(server: _Deployment, setup: Mapping[str, Any]) -> ExportSource:
    key = ExportSigningKey.from_pem(
        setup["export_key_id"], setup["export_key_version"], setup["export_public_key_pem"].encode()
    )
    return ExportSource(
        base_url=f"{server.base_url}/exports",
        index_path=f"{setup['demo_export_root']}/index.txt",
        signing_keys=(key,),
    )


def _download(
    http: httpx.Client,
    server: _Deployment,
    setup: Mapping[str, Any],
    phones: list[Device],
    shown: Reporter,
) -> tuple[list[tuple[SightingIndex, SyncState]], int, int]:
    source = _source(server, setup)
    shared = SharedDerivation()
    now = datetime.now(UTC)

    def sync(phone: Device) -> tuple[SightingIndex, SyncState, SyncReport]:
        # Each phone its own index, state and sync; the HTTP client (thread-safe) and the
        # derivation cache are shared.
        index = SightingIndex(phone.sightings.sightings)
        syncing = ExportSync(source, SyncState(), http=http)
        try:
            report = syncing.run(PhoneMatcher(index, shared), now=now)
        except ClientError as error:
            raise DemoFailed(f"a phone could not download: {error.code}") from None
        return index, syncing.state, report

    states: list[tuple[SightingIndex, SyncState]] = []
    refused = 0
    files: set[str] = set()
    # While one phone's download is on the wire, another verifies and matches: the server
    # and the phones keep both cores busy.
    with ThreadPoolExecutor(max_workers=_DOWNLOAD_THREADS) as pool:
        synced = pool.map(sync, phones)
        for index, state, report in shown.track(
            synced, "phones downloading, verifying, matching", total=len(phones)
        ):
            refused += len(report.refused)
            files.update(report.processed)
            states.append((index, state))
    return states, refused, len(files)


def _score(
    report: DemoReport,
    states: list[tuple[SightingIndex, SyncState]],
    model: RiskModel,
    truth: ExpectedExposures,
    today: date,
    shown: Reporter,
) -> None:
    notified: set[int] = set()
    windows_found = 0
    for phone, (index, state) in shown.track(
        enumerate(states), "phones computing exposure windows", total=len(states)
    ):
        windows = exposure_windows(state.matched_keys, index, model)
        windows_found += len(windows)
        days = daily_summaries(windows, model, today=today)
        if any(day.summary.score_sum >= _NOTIFY_AT for day in days):
            notified.add(phone)
    report.exposure_windows_found = windows_found
    report.exposure_windows_expected = truth.window_count
    report.notified_phones_found = len(notified)
    report.notified_phones_expected = len(truth.notified)
    # Not just as many: the very phones the plan says.
    report.notified_phones_mismatched = len(notified ^ truth.notified)
    report.false_notifications = len(notified - truth.met_a_positive)
