"""``exposure serve [all|keyserver|verification]``: open the services, then serve HTTP.

Before anything else the address is checked (a port in use is found before migrations and
the scheduler start), then the services are opened (:mod:`exposure.compose`): a process
whose database, schema or keys are not right refuses to start with one line. With
``--no-jobs`` the process only answers requests (an API-only replica); with ``--no-api`` it
only runs the scheduled jobs and answers the health probes (a job runner).
"""

from __future__ import annotations

import atexit
import errno
import ipaddress
import os
import shutil
import socket
import tempfile
from enum import StrEnum
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from exposure.app import create_app
from exposure.cli.common import load_settings
from exposure.cli.failures import EXIT_LISTEN, fail
from exposure.compose import DeploymentSettings, open_deployment
from exposure.http.server import BoundedHttpToolsProtocol, ConnectionLimits
from exposure.logs import configure_logging
from exposure.metrics import metrics_registry, serve_metrics
from exposure.settings import ExposureSettings, Service

#: How the parent tells uvicorn's worker processes what it resolved.
_HOST_VARIABLE = "EXPOSURE_HOST"
_PORT_VARIABLE = "EXPOSURE_PORT"
_SERVICES_VARIABLE = "EXPOSURE_SERVE_SERVICES"
_JOBS_VARIABLE = "EXPOSURE_SERVE_JOBS"
_API_VARIABLE = "EXPOSURE_SERVE_API"
#: prometheus-client's multiprocess mode: where each worker writes its metrics.
_MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_METRICS_SETTINGS = "EXPOSURE_METRICS_HOST/EXPOSURE_METRICS_PORT (0: no metrics listener)"


class ServeTarget(StrEnum):
    ALL = "all"
    KEYSERVER = "keyserver"
    VERIFICATION = "verification"

    def services(self) -> list[Service]:
        return list(Service) if self is ServeTarget.ALL else [Service(self.value)]


def _limit_connections(settings: ExposureSettings) -> None:
    BoundedHttpToolsProtocol.configure(
        ConnectionLimits(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_connections=settings.max_connections,
        )
    )


def app_from_environment() -> FastAPI:
    """Application factory of uvicorn's worker processes (``--workers`` above 1).

    Each worker opens its services from the environment as the parent did; the parent has
    already migrated and checked them.
    """
    settings = DeploymentSettings.from_environment()
    configure_logging(settings.base.log_level)
    _limit_connections(settings.base)
    services = [Service(name) for name in os.environ[_SERVICES_VARIABLE].split(",")]
    deployment = open_deployment(settings, services)
    return create_app(
        deployment,
        run_jobs=os.environ.get(_JOBS_VARIABLE) == "1",
        serve_api=os.environ.get(_API_VARIABLE) == "1",
        owns_deployment=True,
    )


def check_address(
    host: str, port: int, settings: str = "--host/--port or EXPOSURE_HOST/EXPOSURE_PORT"
) -> None:
    """Exit 6 with one line unless ``host:port`` can be listened on right now; ``settings``
    names what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        fail(f"cannot listen on {host}: not an address of this host; set {settings}", EXIT_LISTEN)
    family, kind, protocol, _name, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        # As uvicorn binds: an earlier server's connections in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = {
                errno.EADDRINUSE: "is in use",
                errno.EACCES: "needs privileges this process lacks",
                errno.EADDRNOTAVAIL: "is not an address of this host",
            }.get(error.errno or 0, error.strerror or "cannot be bound")
            fail(
                f"cannot listen on {host}:{port}: the address {reason}; choose another with "
                f"{settings}",
                EXIT_LISTEN,
            )


def refuse_demo_timing_off_loopback(host: str) -> None:
    """Exit 2 unless ``host`` is a loopback address: a server with throwaway demo timing
    gives away when each upload came, so it may only answer this machine (a demo, the tour),
    never a network where real phones could reach it."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        fail(
            "EXPOSURE_KEYSERVER_THROWAWAY_DEMO_TIMING is for throwaway demos: "
            f"serve on a loopback address, not {host}",
            2,
        )


def serve(
    target: Annotated[
        ServeTarget,
        typer.Argument(
            help="Which service this process serves: all (the embedded default), "
            "keyserver or verification."
        ),
    ] = ServeTarget.ALL,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default EXPOSURE_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default EXPOSURE_PORT or 8080).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes (one per core is typical).")
    ] = 1,
    jobs: Annotated[
        bool, typer.Option("--jobs/--no-jobs", help="Run the services' scheduled jobs here.")
    ] = True,
    api: Annotated[
        bool,
        typer.Option("--api/--no-api", help="Serve the services' API (--no-api: a job runner)."),
    ] = True,
) -> None:
    """Serve one service or both; state lives where the settings say (SQLite by default)."""
    if not jobs and not api:
        fail("--no-jobs with --no-api leaves nothing to do", 2)
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_settings(**overrides)
    base = settings.base
    configure_logging(base.log_level)
    services = target.services()
    for service in services:
        base.database_url_for(service)  # a service without a database stops here
    check_address(base.host, base.port)
    if Service.KEYSERVER in services and settings.keyserver.throwaway_demo_timing:
        refuse_demo_timing_off_loopback(base.host)
    if base.metrics_port:
        check_address(base.metrics_host, base.metrics_port, _METRICS_SETTINGS)
    _limit_connections(base)
    deployment = open_deployment(settings, services, migrate=base.migrate_on_start)
    held = deployment.per_request_metrics()
    interval = base.metrics_release_interval.total_seconds()
    if workers == 1:
        if base.metrics_port:
            serve_metrics(base.metrics_host, base.metrics_port, metrics_registry(held, interval))
        app: FastAPI | str = create_app(
            deployment, run_jobs=jobs, serve_api=api, owns_deployment=True
        )
    else:
        deployment.close()
        # Each worker records its metrics here; this process serves them all.
        directory = tempfile.mkdtemp(prefix="exposure-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ[_MULTIPROCESS_VARIABLE] = directory
        if base.metrics_port:
            registry = metrics_registry(held, interval, directory)
            serve_metrics(base.metrics_host, base.metrics_port, registry)
        # Workers import the factory and rebuild everything; pin what the parent resolved.
        os.environ[_HOST_VARIABLE] = base.host
        os.environ[_PORT_VARIABLE] = str(base.port)
        os.environ[_SERVICES_VARIABLE] = ",".join(service.value for service in services)
        os.environ[_JOBS_VARIABLE] = "1" if jobs else "0"
        os.environ[_API_VARIABLE] = "1" if api else "0"
        app = "exposure.cli.serve:app_from_environment"
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        host=base.host,
        port=base.port,
        log_level=base.log_level,
        http=BoundedHttpToolsProtocol,
        limit_concurrency=base.max_connections,
        # The access log records client addresses; we never keep those.
        access_log=False,
        server_header=False,
        proxy_headers=False,
        # Uvicorn's records go to the handler configure_logging set up (private format,
        # repeats folded) instead of handlers of its own.
        log_config=None,
    )


serve_app = typer.Typer(add_completion=False)
serve_app.command("serve")(serve)
