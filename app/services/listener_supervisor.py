"""Keep the DICOM listener running as its own process (plain Python; the GUI polls it).

The listener (`hulu-workstation receive ...`) is a separate process in its own session, so closing
the window never stops receiving; the supervisor starts it when absent, adopts one that is already
running for the same archive (from ``listener-status.json``), restarts it when it dies, and stops it
only when asked. A listener that cannot start (port taken, bad TLS files) writes why in its status
file: the supervisor then stops in a FAILED state with that reason (e.g. "port 11112 is in use by
process 4242 (storescp)"); repeated unexplained deaths end FAILED too, with the exit code.
"""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.services.settings_model import ListenerSettings
from dicom_net.listener_status import is_listener_process, read_status

log = logging.getLogger(__name__)


class ListenerState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


@dataclass(frozen=True)
class ListenerStatus:
    state: ListenerState
    pid: int | None
    restarts: int
    message: str
    report: dict  # the listener's own listener-status.json (may be empty)

    def describe(self) -> str:
        """One line for the status bar."""
        if self.state is ListenerState.RUNNING:
            where = f"{self.report.get('aet', '?')}@{self.report.get('port', '?')}" if self.report else ""
            text = f"Listener running {where}".rstrip() + f" (pid {self.pid})"
            if self.restarts:
                text += f", restarted {self.restarts}x"
            if self.report.get("tls") and self.report.get("tls_client_auth") is False:
                text += "; TLS accepts ANY client (no client certificates)"
            return text
        return f"Listener {self.state.value}" + (f": {self.message}" if self.message else "")


def listener_command(settings: ListenerSettings, archive: Path, python: str = sys.executable) -> list[str]:
    """The command line that runs the listener with these settings."""
    cmd = [
        python,
        "-m",
        "app.cli.main",
        "receive",
        "--aet",
        settings.aet,
        "--port",
        str(settings.port),
        "--host",
        settings.host,
        "--archive",
        str(archive),
    ]
    for aet in settings.allowed_aets:
        cmd += ["--allow", aet]
    cmd += ["--acse-timeout", str(settings.acse_timeout)]
    if settings.tls_enabled:
        cmd += ["--tls-cert", settings.tls_cert, "--tls-key", settings.tls_key]
        if settings.tls_ca:
            cmd += ["--tls-ca", settings.tls_ca]
        elif settings.tls_no_client_auth:
            cmd += ["--tls-no-client-auth"]
    return cmd


def read_status_report(archive: Path) -> dict:
    """The listener's status file (:func:`dicom_net.listener_status.read_status`: a dead
    listener's "running" reads "dead"), or {} when there is none."""
    return read_status(archive) or {}


class ListenerSupervisor:
    """Start/adopt, watch and restart the listener process. Call :meth:`poll` periodically."""

    def __init__(
        self,
        archive: Path,
        settings: ListenerSettings,
        *,
        log_path: Path | None = None,
        command_factory: Callable[[ListenerSettings, Path], list[str]] = listener_command,
        max_rapid_failures: int = 5,
        rapid_window_s: float = 20.0,
    ):
        self.archive = Path(archive)
        self.settings = settings
        self.log_path = log_path or self.archive.parent / "logs" / "listener.log"
        self.command_factory = command_factory
        self.max_rapid_failures = max_rapid_failures
        self.rapid_window_s = rapid_window_s
        self._proc: subprocess.Popen | None = None
        self._adopted_pid: int | None = None
        self._adopted_started: float | None = None
        self._wanted = False
        self._deaths: list[float] = []
        self.restarts = 0
        self._state = ListenerState.STOPPED
        self._message = ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else self._adopted_pid

    def start(self) -> ListenerStatus:
        """Make sure a listener runs: adopt a live one for this archive, or spawn one."""
        self._wanted = True
        if self.pid and self._alive():
            return self.status()
        report = read_status_report(self.archive)
        if report.get("state") == "running":  # checked: that process is alive and wrote it
            self._adopted_pid, self._adopted_started, self._proc = report["pid"], report["pid_started"], None
            self._state, self._message = ListenerState.RUNNING, "adopted running listener"
            log.info("adopted listener pid %d", report["pid"])
            return self.status()
        self._spawn()
        return self.status()

    def _spawn(self) -> None:
        self.archive.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command_factory(self.settings, self.archive)
        env = dict(os.environ, TCP_NODELAY="1", PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                cwd=_project_root(),
            )
        self._adopted_pid = None
        self._state, self._message = ListenerState.RUNNING, ""
        log.info("started listener pid %d on port %d", self._proc.pid, self.settings.port)

    def poll(self) -> ListenerStatus:
        """Check the process; restart it if it died while wanted. Returns the current status."""
        if not self._wanted:
            return self.status()
        pid = self.pid
        if pid is None or not self._alive():
            code = self._proc.returncode if self._proc else None
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < self.rapid_window_s] + [now]
            self._proc, self._adopted_pid = None, None
            cause = self._start_failure(pid)
            if cause:  # port in use, bad TLS files...: restarting cannot help
                self._wanted = False
                self._state, self._message = ListenerState.FAILED, f"{cause} (see {self.log_path})"
                log.error("listener cannot start: %s", cause)
            elif len(self._deaths) >= self.max_rapid_failures:
                self._wanted = False
                self._state = ListenerState.FAILED
                self._message = (
                    f"exited {len(self._deaths)} times in {self.rapid_window_s:.0f} s "
                    f"(last code {code}); see {self.log_path}"
                )
                log.error("listener keeps dying; giving up (code %s)", code)
            else:
                log.warning("listener died (code %s); restarting", code)
                self.restarts += 1
                self._spawn()
                self._message = f"restarted after exit code {code}"
        return self.status()

    def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._adopted_pid is not None and is_listener_process(self._adopted_pid, self._adopted_started)

    def _start_failure(self, pid: int | None) -> str:
        """Why process ``pid`` could not start, as it wrote in the status file ('' if it did not)."""
        report = read_status_report(self.archive)
        if pid is not None and report.get("state") == "failed" and report.get("pid") == pid:
            return str(report.get("error") or "")
        return ""

    def status(self) -> ListenerStatus:
        report = read_status_report(self.archive) if self._state is ListenerState.RUNNING else {}
        return ListenerStatus(self._state, self.pid, self.restarts, self._message, report)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop receiving (only when the user asks, or in tests)."""
        self._wanted = False
        pid = self.pid
        if pid and self._alive():  # never signal a PID that has since been given to another process
            try:
                proc = psutil.Process(pid)
                proc.terminate()
                proc.wait(timeout_s)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.Error:
                pass
        if self._proc:
            self._proc.wait(timeout_s)
        self._proc, self._adopted_pid = None, None
        self._state, self._message = ListenerState.STOPPED, "stopped by user"

    def keeps_receiving_notice(self) -> str:
        """What quitting the app leaves running, and how to stop it."""
        s = self.settings
        return (
            f"The DICOM listener {s.aet} on port {s.port} (process {self.pid}) keeps receiving "
            "studies into the archive after you quit; modalities and PACS can go on sending.\n\n"
            "To stop it later: open the workstation and choose Listener > Stop receiving, or run\n"
            f"    hulu-workstation receive --stop --archive {self.archive}"
        )

    def restart_with(self, settings: ListenerSettings) -> ListenerStatus:
        """Apply new listener settings: stop the old process, start a new one."""
        self.stop()
        self.settings = settings
        self._deaths.clear()
        return self.start()


def _project_root() -> str:
    """Run the child from the package's parent so `-m app.cli.main` resolves to this checkout."""
    return str(Path(__file__).resolve().parents[2])
