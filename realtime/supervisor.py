"""The process launcher's watch over its stage processes: a stage that dies is restarted.

A stage process that exits with a code other than 0 (a crash: an exception out of the stage's
loop exits 1) or is killed by a signal (``kill -9``) is noticed on the launcher's next turn
(every 0.1 s) and started again from the same spec, with its *incarnation* (how many times it
was restarted) passed on: the restarted stage takes back what its upstream had not seen
released and rebuilds its state (:mod:`realtime.stages.recovery`).  Each stage is restarted at
most ``max_restarts`` times; one more death ends the session with the stage's log tail.

Every restart is logged, and written as one JSON line to ``restarts.jsonl`` in the session
folder (read by :mod:`realtime.summary_restarts`); each stage's process id is in
``logs/NAME.pid`` (for operators, and for the tests that kill stages).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from rt_base.checks import check_number
from rt_base.errors import StageError

#: where the restarts of a session are written, one JSON object a line
RESTARTS_FILE = "restarts.jsonl"


def describe_exit(code: int) -> str:
    """``"exit code 1"`` or ``"signal SIGKILL"`` (a negative Popen return code)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Starts stage processes and restarts those that die.

    Parameters
    ----------
    launch : ``launch(name, incarnation) -> Popen``: start one stage process.
    out : the session folder (``restarts.jsonl``, ``logs/``).
    max_restarts : restarts allowed per stage.
    log : where the restarts are told.
    """

    def __init__(
        self,
        launch: Callable[[str, int], subprocess.Popen],
        out: Path,
        *,
        max_restarts: int,
        log: Callable[[str], None],
    ) -> None:
        self._launch = launch
        self.out = Path(out)
        self.max_restarts = check_number(
            max_restarts, "max_restarts", minimum=0, maximum=100, integer=True
        )
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        (self.out / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> None:
        """Start stage ``name`` (its first incarnation)."""
        self.restarts.setdefault(name, 0)
        self._start(name, 0)

    def _start(self, name: str, incarnation: int) -> None:
        proc = self._launch(name, incarnation)
        self.procs[name] = proc
        (self.out / "logs" / f"{name}.pid").write_text(f"{proc.pid}\n")

    def exited(self, name: str) -> int | None:
        """Stage ``name``'s exit code once it exited by itself (None: running)."""
        return self.procs[name].poll()

    def check(self) -> list[str]:
        """Restart every stage process that died; returns their names.  A clean exit (code 0,
        after the session's end) is not a death.

        Raises
        ------
        StageError
            A stage died once more than ``max_restarts`` allows (with its log's tail).
        """
        restarted = []
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or code == 0:
                continue
            how = describe_exit(code)
            done = self.restarts[name]
            if done >= self.max_restarts:
                tail = _tail(self.out / "logs" / f"{name}.log")
                raise StageError(
                    f"stage {name!r} died ({how}) after {done} restart(s), the most allowed "
                    f"(--max-restarts {self.max_restarts}):\n{tail}"
                )
            self.restarts[name] = done + 1
            old_pid = proc.pid
            self._start(name, done + 1)
            record = {
                "stage": name,
                "exit": how,
                "code": code,
                "restart": done + 1,
                "old_pid": old_pid,
                "pid": self.procs[name].pid,
                "time": time.time(),
            }
            with open(self.out / RESTARTS_FILE, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            self.log(
                f"[supervisor] stage {name!r} died ({how}); restarted it "
                f"({done + 1} of at most {self.max_restarts})"
            )
            restarted.append(name)
        return restarted

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every stage still running; SIGKILL those that do not stop in ``timeout``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return f"(no log at {path})"
