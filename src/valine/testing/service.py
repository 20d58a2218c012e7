"""``valine serve`` as its own process, wired to the stand-ins: one launcher for all.

The end-to-end tests (:mod:`valine.testing.world`), ``valine demo``, ``make bench`` and
the proving ground start the service the same way: a free loopback port, the environment without
the caller's ``DISCORD_*``/``GITHUB_*``/``VALINE_*`` settings plus the ones given, the
log in a file of the working directory, and a bounded wait until ``GET /healthz``
answers. :func:`standin_env` is the environment that points a service at the GitHub
and Discord stand-ins.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The one interface everything listens on.
HOST = "127.0.0.1"
#: Seconds ``valine serve`` gets to answer ``/healthz`` (imports, schema, workers).
STARTUP_TIMEOUT = 20.0
#: Seconds it gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: ``valine serve`` itself, and the testing launcher: the same service with the test hooks
#: (``VALINE_TEST_*``, see :mod:`valine.testing.launcher`), which the product never reads.
SERVE = ("valine.runtime.cli", "serve")
SERVE_WITH_HOOKS = ("valine.testing.launcher",)


class ServiceFailed(RuntimeError):
    """``valine serve`` exited early or did not answer in time (its log is in the message)."""


@dataclass
class Service:
    """A running ``valine serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path

    @property
    def pid(self) -> int:
        """The service's process id."""
        return self.process.pid

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """One HTTP request over a fresh loopback connection: (status, body)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def logs(self) -> str:
        """Everything the process has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the process logged."""
        return "\n".join(self.logs().splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without Valine's settings, plus ``env``."""
    kept = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "GITHUB_", "VALINE_"))
    }
    return {**kept, **env}


def start_service(
    workdir: Path,
    env: dict[str, str],
    *,
    log_name: str = "service.log",
    timeout: float = STARTUP_TIMEOUT,
) -> Service:
    """Start ``valine serve`` in ``workdir`` and wait (bounded) until ``/healthz`` answers.

    An ``env`` that sets a ``VALINE_TEST_*`` hook starts it through the testing launcher.
    Raises :class:`ServiceFailed`, with the log, if it exits or does not answer in time.
    """
    port = free_port()
    log_path = workdir / log_name
    hooked = any(k.startswith("VALINE_TEST_") for k in env)
    command = [sys.executable, "-m", *(SERVE_WITH_HOOKS if hooked else SERVE), "--host", HOST]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [*command, "--port", str(port)],
            cwd=workdir,
            env=clean_env(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    service = Service(process, port, workdir, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceFailed(f"valine serve exited early:\n{service.logs()}")
        try:
            if service.request("GET", "/healthz", timeout=2.0)[0] == 200:
                return service
        except OSError:
            time.sleep(0.05)
    stop_service(service)
    raise ServiceFailed(f"valine serve did not answer in time:\n{service.logs()}")


def stop_service(service: Service, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after a bounded wait (nothing if it already exited)."""
    if service.process.poll() is not None:
        return
    service.process.terminate()
    try:
        service.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=timeout)


def standin_env(
    github: Any, discord: Any, *, public_key: str, webhook_secret: str, repo: str
) -> dict[str, str]:
    """The settings of a service wired to these stand-ins (``public_key``: hex Ed25519)."""
    return {
        "DISCORD_PUBLIC_KEY": public_key,
        "DISCORD_APPLICATION_ID": discord.application_id,
        "DISCORD_BOT_TOKEN": discord.bot_token,
        "DISCORD_API_URL": discord.url,
        "GITHUB_WEBHOOK_SECRET": webhook_secret,
        "GITHUB_TOKEN": github.token,
        "GITHUB_REPOSITORY": repo,
        "GITHUB_API_URL": github.url,
        "VALINE_NOTIFY_WINDOW": "0.2",
    }
