"""A Spark standalone cluster on this machine (a master and its workers) for dev and tests.

It runs the master and worker daemons of pyspark's own Spark distribution (`bin/spark-class`),
each in a child JVM bound to 127.0.0.1 on free ports, so `GRIDLAKE_SPARK_MASTER=spark://...`
sends a job's tasks to executors in other JVMs exactly as a real cluster does. Everything it
writes stays in one folder:

    DIR/master.out, DIR/worker-N.out   the daemons' own logs
    DIR/worker-N/                       each worker's work dir: one folder per application,
                                        holding each executor's stdout and stderr

Example:
    >>> with StandaloneCluster("/tmp/cluster", workers=2) as cluster:      # doctest: +SKIP
    ...     print(cluster.master_url)
    spark://127.0.0.1:41234
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from gridlake.errors import GridlakeError, SetupError
from streaming.kafka_broker import free_port, java_executable

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class ClusterError(GridlakeError):
    """The Spark standalone cluster did not start or lost a daemon."""


def spark_home() -> Path:
    """pyspark's own Spark distribution (its `bin/spark-class` and `jars/`)."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").is_file():
        raise SetupError(f"pyspark at {home} has no bin/spark-class; reinstall pyspark")
    return home


class StandaloneCluster:
    """A Spark standalone master with `workers` workers on 127.0.0.1, started and stopped here.

    Parameters:
        dir: folder for the daemons' logs and the workers' work dirs (created).
        workers: how many workers (each starts one executor per application).
        cores: cores each worker offers.
        memory: memory each worker offers to executors (Spark's size syntax, e.g. `1g`).
        ready_timeout: seconds to wait for the master and every worker to register.
        stop_timeout: seconds `stop` waits after SIGTERM for each daemon before killing it.
    """

    def __init__(self, dir: str | os.PathLike[str], workers: int = 2, cores: int = 1,
                 memory: str = "1g", ready_timeout: float = 180.0,
                 stop_timeout: float = 30.0) -> None:
        if workers < 1 or cores < 1:
            raise ClusterError(f"a cluster needs at least 1 worker and 1 core each, "
                               f"got {workers} worker(s) with {cores} core(s)")
        self.dir = Path(dir).resolve()
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.web_port: int | None = None
        self._processes: list[tuple[str, subprocess.Popen]] = []

    @property
    def master_url(self) -> str:
        """What GRIDLAKE_SPARK_MASTER must be set to."""
        return f"spark://{HOST}:{self.port}"

    @property
    def web_url(self) -> str:
        """The master's web UI (and its `/json/` state)."""
        return f"http://{HOST}:{self.web_port}"

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for _, p in self._processes)

    def worker_dir(self, index: int) -> Path:
        return self.dir / f"worker-{index}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"StandaloneCluster({str(self.dir)!r}, {self.workers} workers, {state})"

    # -- life cycle ---------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        home = spark_home()
        env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOCAL_IP=HOST,
                   SPARK_NO_DAEMONIZE="1")
        java_executable()  # no JDK: one clear sentence here, not a shell error per daemon
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.dir / f"{name}.out").open("ab")
        try:
            # A session of its own: a Ctrl-C in the terminal reaches Python, which stops the
            # daemons in order (workers first, so they stop their executors).
            process = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args], cwd=self.dir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        self._processes.append((name, process))

    def start(self) -> StandaloneCluster:
        """Start the master, then the workers, and wait until all are registered; returns self."""
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        env = self._env()
        self.port, self.web_port = free_port(), free_port()
        atexit.register(self.stop)
        try:
            self._spawn("master", [MASTER_CLASS, "--host", HOST, "--port", str(self.port),
                                   "--webui-port", str(self.web_port)], env)
            self._wait_for(lambda state: state.get("status") == "ALIVE", "the master")
            for index in range(self.workers):
                work_dir = self.worker_dir(index)
                work_dir.mkdir(exist_ok=True)
                self._spawn(f"worker-{index}", [
                    WORKER_CLASS, "--host", HOST, "--port", str(free_port()),
                    "--webui-port", str(free_port()), "--cores", str(self.cores),
                    "--memory", self.memory, "--work-dir", str(work_dir), self.master_url], env)
            self._wait_for(lambda state: state.get("aliveworkers", 0) >= self.workers,
                           f"{self.workers} worker(s)")
        except BaseException:
            self.stop()
            raise
        return self

    def state(self) -> dict:
        """The master's state (its web UI's `/json/`): workers, active and completed apps."""
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
            return json.load(response)

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            for name, process in self._processes:
                if process.poll() is not None:
                    raise ClusterError(
                        f"the Spark {name} exited with status {process.returncode} while the "
                        f"cluster was starting (see {self.dir / (name + '.out')})")
            try:
                if ready(self.state()):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.5)
        raise ClusterError(f"{what} of the Spark cluster at {self.master_url} did not come up "
                           f"within {self.ready_timeout:g} s (see {self.dir})")

    def stop(self) -> None:
        """Stop the workers (and their executors), then the master: SIGTERM, then SIGKILL."""
        atexit.unregister(self.stop)
        processes, self._processes = self._processes, []
        for _, process in reversed(processes):  # workers first, the master last
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            # An executor a worker failed to stop would hold memory and a core: the daemon's
            # session is its own, so its group holds exactly what it started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
