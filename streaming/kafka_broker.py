"""A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) for dev and tests.

It runs Apache Kafka's own jars, fetched by Maven (`make jars`) into `.jvm/kafka-broker`, in a
child JVM bound to 127.0.0.1. Everything it writes stays in one folder:

    DIR/server.properties   generated at every start (ports may change)
    DIR/log4j2.properties   the broker's logging: warnings and worse, to DIR/broker.log
    DIR/data/               log.dirs (formatted once; a restart on DIR keeps every message)
    DIR/broker.out          the JVM's own stdout/stderr (crashes before logging is set up)

Example:
    >>> with KafkaBroker("/tmp/kafka") as broker:          # doctest: +SKIP
    ...     broker.create_topic("telemetry", partitions=3)
    ...     print(broker.bootstrap)
    127.0.0.1:41234
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from gridlake.errors import BadArgumentError, GridlakeError, SetupError
from gridlake.session import REPO_ROOT

HOST = "127.0.0.1"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"  # what `kafka-storage.sh` runs in Kafka 4.x
# Serial GC and the C1-only JIT start the JVM about a second faster than G1 + C2; a dev broker
# on a 2-core machine never needs the peak throughput they give up.
DEFAULT_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")

_LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


class BrokerError(GridlakeError):
    """The Kafka broker did not start, stopped unexpectedly, or refused an admin request."""


def broker_jars_dir() -> Path:
    """The folder of the Kafka broker's jars (`GRIDLAKE_KAFKA_JARS` overrides it)."""
    return Path(os.environ.get("GRIDLAKE_KAFKA_JARS", REPO_ROOT / ".jvm" / "kafka-broker"))


def java_executable() -> str:
    """The `java` to run: `$JAVA_HOME/bin/java` when set, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise SetupError(
            "java was not found; the Kafka broker needs a JDK 17 or newer on PATH or in JAVA_HOME"
        )
    return found


def _classpath(folder: Path) -> str:
    if not any(folder.glob("kafka_2.13-*.jar")):
        raise SetupError(
            f"no Kafka broker jars found in {folder}; run `make jars` (Maven fetches them once)"
        )
    return str(folder / "*")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _cluster_id() -> str:
    # Kafka's Uuid.randomUuid().toString(): 16 random bytes, URL-safe base64 without padding.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(port: int, controller_port: int, data_dir: Path,
                      num_partitions: int) -> str:
    """The `server.properties` of a one-node KRaft cluster listening on 127.0.0.1 only."""
    settings = {
        "node.id": 1,
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "log.dirs": data_dir,
        "num.partitions": num_partitions,
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # A consumer group with one member should not wait 3 s for others to join.
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class KafkaBroker:
    """A one-node Kafka cluster in a child JVM; a context manager that starts and stops it.

    Example:
        >>> broker = KafkaBroker("/tmp/kafka", port=9092).start()   # doctest: +SKIP
        >>> broker.stop(); broker.start()     # same folder and ports: every message is kept

    Parameters:
        dir: folder for the configuration, the data and the logs; created when missing.
        port: the PLAINTEXT port clients use; a free one when None (kept across restarts).
        controller_port: the KRaft controller's port; a free one when None.
        num_partitions: partitions of topics created automatically (first produce) or by
            `create_topic` without a count.
        heap: the JVM's maximum heap (`-Xmx`).
        ready_timeout: seconds `start` waits for the broker to answer a metadata request.
        stop_timeout: seconds `stop` waits after SIGTERM before killing the JVM.
        jvm_options: extra JVM flags; default `DEFAULT_JVM_OPTIONS`.
    """

    def __init__(self, dir: str | os.PathLike[str], port: int | None = None, *,
                 controller_port: int | None = None, num_partitions: int = 3,
                 heap: str = "512m", ready_timeout: float = 60.0, stop_timeout: float = 30.0,
                 jvm_options: tuple[str, ...] = DEFAULT_JVM_OPTIONS) -> None:
        if num_partitions < 1:
            raise BadArgumentError(f"num_partitions is {num_partitions}; it must be at least 1")
        self.dir = Path(dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.num_partitions = num_partitions
        self.heap = heap
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.jvm_options = tuple(jvm_options)
        self._process: subprocess.Popen[bytes] | None = None
        self._output = None

    # -- where things are ---------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:PORT`, the value of `bootstrap.servers` for clients."""
        if self.port is None:
            raise BrokerError("the Kafka broker has no port yet; start it first")
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"

    @property
    def output_file(self) -> Path:
        return self.dir / "broker.out"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"KafkaBroker({str(self.dir)!r}, port={self.port}, {state})"

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> KafkaBroker:
        """Format the storage on first use, start the JVM and wait until it answers; returns self."""
        if self.running:
            return self
        java = java_executable()
        classpath = _classpath(broker_jars_dir())
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        if self.controller_port is None:
            self.controller_port = free_port()
            while self.controller_port == self.port:
                self.controller_port = free_port()
        config = self.dir / "server.properties"
        config.write_text(server_properties(self.port, self.controller_port, self.data_dir,
                                            self.num_partitions))
        log_config = self.dir / "log4j2.properties"
        log_config.write_text(_LOG4J2.format(log_file=self.log_file))
        jvm = [java, f"-Xmx{self.heap}", *self.jvm_options,
               f"-Dlog4j2.configurationFile={log_config}", "-cp", classpath]
        if not (self.data_dir / "meta.properties").exists():
            self._format(jvm, config)
        self._output = open(self.output_file, "ab")  # noqa: SIM115 - closed in stop()
        # A session of its own: a Ctrl-C in the terminal reaches Python, which stops the broker
        # in order, instead of reaching both at once.
        self._process = subprocess.Popen(
            [*jvm, MAIN_CLASS, str(config)], cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _format(self, jvm: list[str], config: Path) -> None:
        command = [*jvm, STORAGE_TOOL_CLASS, "format", f"--cluster-id={_cluster_id()}",
                   f"--config={config}"]
        result = subprocess.run(command, cwd=self.dir, capture_output=True, timeout=120)
        if result.returncode != 0:
            detail = _last_line(result.stderr or result.stdout)
            raise BrokerError(
                f"formatting the Kafka storage in {self.data_dir} failed with status "
                f"{result.returncode}: {detail}"
            )

    def _wait_until_ready(self) -> None:
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + self.ready_timeout
        admin = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                status = None if self._process is None else self._process.returncode
                raise BrokerError(
                    f"the Kafka broker exited with status {status} while starting: "
                    f"{self._last_error()} (see {self.log_file})"
                )
            if admin is None:
                # Only connect a client once the port is open: librdkafka would otherwise log
                # every refused connection.
                try:
                    socket.create_connection((HOST, self.port), timeout=0.5).close()
                except OSError:
                    time.sleep(0.1)
                    continue
                admin = _admin_client(self.bootstrap)
            try:
                if admin.list_topics(timeout=1.0).brokers:
                    return
            except KafkaException:
                time.sleep(0.1)
        raise BrokerError(
            f"the Kafka broker at {self.bootstrap} did not answer within {self.ready_timeout:g} s "
            f"(see {self.log_file})"
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop the broker: SIGTERM (a clean shutdown), then SIGKILL after `timeout` seconds."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- topics -------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int | None = None,
                     timeout: float = 30.0) -> None:
        """Create topic `name` (replication 1) and wait until every partition has a leader.

        Parameters:
            name: the topic.
            partitions: how many; default the broker's `num_partitions`.
            timeout: seconds to wait for the broker.
        """
        from confluent_kafka.admin import NewTopic

        count = self.num_partitions if partitions is None else partitions
        request = NewTopic(name, num_partitions=count, replication_factor=1)
        admin = _admin_client(self.bootstrap)
        self._admin_result(admin.create_topics([request], request_timeout=timeout)[name],
                           f"creating topic {name!r} with {count} partitions")
        self._wait_for_partitions(admin, name, count, timeout)

    def add_partitions(self, name: str, total: int, timeout: float = 30.0) -> None:
        """Grow topic `name` to `total` partitions (Kafka never shrinks a topic).

        Parameters:
            name: an existing topic.
            total: the partition count afterwards; more than it has now.
            timeout: seconds to wait for the broker.
        """
        from confluent_kafka.admin import NewPartitions

        admin = _admin_client(self.bootstrap)
        future = admin.create_partitions([NewPartitions(name, total)],
                                         request_timeout=timeout)[name]
        self._admin_result(future, f"growing topic {name!r} to {total} partitions")
        self._wait_for_partitions(admin, name, total, timeout)

    def partitions(self, name: str, timeout: float = 10.0) -> int:
        """How many partitions topic `name` has (0 when it does not exist)."""
        topic = _admin_client(self.bootstrap).list_topics(name, timeout=timeout).topics.get(name)
        if topic is None or topic.error is not None:
            return 0
        return len(topic.partitions)

    def _admin_result(self, future, doing: str) -> None:
        from confluent_kafka import KafkaException

        try:
            future.result()
        except KafkaException as exc:
            raise BrokerError(f"{doing} on {self.bootstrap} failed: {exc.args[0].str()}") from None

    def _wait_for_partitions(self, admin, name: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=timeout).topics.get(name)
            if (topic is not None and topic.error is None and len(topic.partitions) == count
                    and all(p.leader >= 0 for p in topic.partitions.values())):
                return
            time.sleep(0.05)
        raise BrokerError(
            f"topic {name!r} on {self.bootstrap} did not show {count} partitions within "
            f"{timeout:g} s"
        )

    def _last_error(self) -> str:
        for path in (self.output_file, self.log_file):
            if path.exists():
                line = _last_line(path.read_bytes()[-8192:])
                if line:
                    return line
        return "no output"


def _admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False})


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "no output"
