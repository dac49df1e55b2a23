"""A real Redis Cluster and a real Sentinel set-up for tests, all on 127.0.0.1.

RedisClusterServers: 6 `redis-server --cluster-enabled yes` (3 primaries, 3
replicas, made with `redis-cli --cluster create`), a 1 s node timeout so a
dead primary is replaced within seconds. RedisSentinelServers: 1 primary, 1
replica and 3 sentinels (down-after 500 ms). `kill_primary*` SIGKILLs; stop()
ends every process either made. Both raise Unavailable (tests skip) when the
binaries are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port
from tests.servers import Unavailable, wait_for

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a silent node is FAIL after ~this
DOWN_AFTER_MS = 500  # sentinel down-after-milliseconds
FAILOVER_TIMEOUT_MS = 2000  # sentinel failover-timeout
SERVICE = "mymaster"


def _binaries() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        raise Unavailable("redis-server/redis-cli are not installed")
    return server, cli


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


def _client(port: int):  # noqa: ANN202
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)


def _info(port: int, section: str) -> dict:
    import redis

    try:
        with _client(port) as r:
            return r.info(section)
    except redis.RedisError:
        return {}


class _Processes:
    def __init__(self, prefix: str) -> None:
        self.server, self.cli = _binaries()
        # A port found free may be taken before redis binds it (redis exits):
        # then the whole set-up is made again on other ports.
        for attempt in range(3):
            self.dir = Path(tempfile.mkdtemp(prefix=prefix))
            self.procs: dict[int, subprocess.Popen[bytes]] = {}
            try:
                self._start()
                return
            except RuntimeError:
                self.stop()
                if attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise

    def _start(self) -> None:
        raise NotImplementedError

    def spawn(self, port: int, *args: str) -> None:
        log = open(self.dir / f"{port}.log", "wb")
        self.procs[port] = subprocess.Popen(
            [self.server, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        log.close()

    def alive(self, port: int) -> bool:
        proc = self.procs.get(port)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"redis on port {port} exited: {self.log(port)}")
        try:
            with _client(port) as r:
                return bool(r.ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()  # SIGKILL: no goodbye to clients or peers
        proc.wait(10)

    def log(self, port: int) -> str:
        path = self.dir / f"{port}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


_NO_PERSISTENCE = (
    *("--save", "", "--appendonly", "no", "--bind", "127.0.0.1"),
    # A replica's first sync starts at once (the default waits 5 s for more).
    *("--repl-diskless-sync-delay", "0"),
)


class RedisClusterServers(_Processes):
    """3 primaries + 3 replicas; `url` is the redis+cluster:// URL of all six."""

    def __init__(self, nodes: int = 6) -> None:
        self.nodes = nodes
        super().__init__("crabllm-cluster-")
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _start(self) -> None:
        ports = _free_ports(2 * self.nodes)
        self.ports, bus = ports[: self.nodes], ports[self.nodes :]
        for port, bus_port in zip(self.ports, bus, strict=True):
            # The bus port is chosen too: port + 10000 may pass 65535.
            self.spawn(
                port,
                "--port",
                str(port),
                "--cluster-port",
                str(bus_port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                # A replica takes over however long its link was down.
                "--cluster-replica-validity-factor",
                "0",
                *_NO_PERSISTENCE,
            )
        for port in self.ports:
            wait_for(lambda p=port: self.alive(p), what=f"cluster node {port}")
        made = subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
        )
        if made.returncode != 0:
            raise RuntimeError(made.stdout.decode() + made.stderr.decode())
        wait_for(self.ready, timeout=30, what="cluster state ok with replicas")

    def ready(self) -> bool:
        """Every live node is cluster_state:ok; each primary has a synced replica."""
        import redis

        if not self.state_ok():
            return False
        try:
            primaries = self.primaries()
        except redis.RedisError:
            return False
        if len(primaries) != len(self.procs) // 2:
            return False
        return all(
            _info(p, "replication").get("connected_slaves", 0) >= 1
            and all(
                _info(r, "replication").get("master_link_status") == "up"
                for r in self.replicas_of(p)
            )
            for p in primaries
        )

    def state_ok(self) -> bool:
        """Every live node says cluster_state:ok (each slot has a primary)."""
        import redis

        try:
            for port in self.procs:
                with _client(port) as r:
                    if r.cluster("info")["cluster_state"] != "ok":
                        return False
        except redis.RedisError:
            return False
        return True

    def _nodes(self) -> list[dict]:
        port = next(p for p in self.procs if self.alive(p))
        with _client(port) as r:
            raw = r.execute_command("CLUSTER", "NODES").decode()
        nodes = []
        for line in raw.strip().splitlines():
            fields = line.split()
            nodes.append(
                {
                    "id": fields[0],
                    "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                    "flags": fields[2].split(","),
                    "master": fields[3],
                }
            )
        return nodes

    def primaries(self) -> list[int]:
        """Ports of the live primaries, as the cluster sees them."""
        return sorted(
            n["port"]
            for n in self._nodes()
            if "master" in n["flags"]
            and "fail" not in n["flags"]
            and n["port"] in self.procs
        )

    def replicas_of(self, port: int) -> list[int]:
        nodes = self._nodes()
        ids = {n["port"]: n["id"] for n in nodes}
        return [n["port"] for n in nodes if n["master"] == ids.get(port)]

    def primary_of(self, key: str) -> int:
        """The port of the primary serving `key`'s hash slot."""
        port = next(p for p in self.procs if self.alive(p))
        with _client(port) as r:
            slot = r.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise LookupError(f"no node serves slot {slot}")

    def kill_primary_of(self, key: str) -> int:
        port = self.primary_of(key)
        self.kill(port)
        return port


class RedisSentinelServers(_Processes):
    """1 primary, 1 replica, 3 sentinels; `url` is the redis+sentinel:// URL."""

    def __init__(self) -> None:
        super().__init__("crabllm-sentinel-")
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _start(self) -> None:
        self.primary, self.replica, *self.sentinels = _free_ports(5)
        self.spawn(self.primary, "--port", str(self.primary), *_NO_PERSISTENCE)
        self.spawn(
            self.replica,
            "--port",
            str(self.replica),
            "--replicaof",
            "127.0.0.1",
            str(self.primary),
            *_NO_PERSISTENCE,
        )
        # Each sentinel is told its id, the replica and its peers up front:
        # found by itself, the replica takes up to 10 s (an INFO period).
        ids = {port: f"{i + 1:040x}" for i, port in enumerate(self.sentinels)}
        for port in self.sentinels:
            peers = "".join(
                f"sentinel known-sentinel {SERVICE} 127.0.0.1 {p} {ids[p]}\n"
                for p in self.sentinels
                if p != port
            )
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel myid {ids[port]}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
                f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica}\n" + peers
            )
            self.spawn(port, str(conf), "--sentinel")
        for port in [self.primary, self.replica, *self.sentinels]:
            wait_for(lambda p=port: self.alive(p), what=f"redis on {port}")
        wait_for(self.ready, timeout=30, what="sentinels that know the replica")

    def ready(self) -> bool:
        """Every sentinel sees the replica in sync and the two other sentinels:
        only then can they agree on a failover."""

        for port in self.sentinels:
            # master0:name=mymaster,status=ok,address=...,slaves=1,sentinels=3
            master = _info(port, "sentinel").get("master0") or {}
            if master.get("sentinels") != 3 or master.get("slaves", 0) < 1:
                return False
        return _info(self.replica, "replication").get("master_link_status") == "up"

    def current_primary(self) -> int:
        """The primary's port, as a majority of the sentinels say."""
        answers = []
        for port in self.sentinels:
            master = _info(port, "sentinel").get("master0") or {}
            if "address" in master:
                answers.append(int(str(master["address"]).rsplit(":", 1)[1]))
        return max(set(answers), key=answers.count) if answers else 0

    def kill_primary(self) -> int:
        port = self.current_primary()
        self.kill(port)
        return port
