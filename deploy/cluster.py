#!/usr/bin/env python3
"""A local cluster on one machine: Redis, the engine process, edges, nginx.

    python deploy/cluster.py run  [--port 8080] [--edges 2] [--engine-port 5000]
                                  [--edge-port 5001] [--redis-port 6380]
                                  [--data-dir ./data] [--run-dir ./cluster-run] [-- engine args]
    python deploy/cluster.py stop [--run-dir ./cluster-run]
    python deploy/cluster.py nginx-site --listen 80 --engine 10.0.0.2:5000 \\
                                  --edge 10.0.0.3:5001 --edge 10.0.0.4:5001

``run`` (``make cluster``) starts Debian's ``redis-server`` (127.0.0.1 only, no
persistence: the queue holds nothing that must survive; the journal is the
truth), the engine process (``api/app.py --message-queue``), the edges
(``api/app.py --role edge``) and Debian's ``nginx`` (``deploy/matchbook-site.conf``
rendered with these ports, its own ``nginx.conf``, pid file, logs and temp
paths in the run dir), each in the foreground as a child of this process; it
prints the URL and waits. Ctrl-C, SIGTERM or ``stop`` (``make cluster-stop``,
which signals this process by the PID in ``RUN_DIR/cluster.pid``) stops them in
reverse order by their PIDs: nginx, the edges, the engine (its final snapshot),
Redis. If this process itself was killed, ``stop`` stops the children it
recorded in ``RUN_DIR/pids.json``, each only if that PID still runs the
recorded command.

Everything listens on 127.0.0.1 except nginx's public port (``--host`` for
nginx, default 127.0.0.1 too). See Documentation/SCALING.md.

The classes (``Redis``, ``Nginx``, ``App``, ``Cluster``) are what the tests use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE_TEMPLATE = os.path.join(ROOT, "deploy", "matchbook-site.conf")
REDIS_SERVER = "/usr/bin/redis-server"
NGINX = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def render_site(listen: str, engine: str, edges: list[str]) -> str:
    """``deploy/matchbook-site.conf`` with its placeholders filled in."""
    with open(SITE_TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    servers = "\n".join(f"    server {e} max_fails=1 fail_timeout=5s;" for e in edges)
    return text.replace("${LISTEN}", listen).replace("${ENGINE}", engine).replace("${EDGE_SERVERS}", servers)


class Child:
    """A child process with its output in ``RUN_DIR/<name>.log``, stopped by PID."""

    name = "child"
    nice = 0  # added to the child's niceness (lower CPU priority), e.g. edges beside the engine

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(run_dir, f"{self.name}.log")
        self._log = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def spawn(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        self._log = open(self.log_path, "ab")
        # own process group: a Ctrl-C on the terminal reaches this script only, which
        # then stops the children in order
        nice = self.nice
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Redis(Child):
    """Debian's redis-server on 127.0.0.1, no persistence, its files in the run dir."""

    name = "redis"

    def __init__(self, run_dir: str, port: int) -> None:
        super().__init__(run_dir)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def command(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.run_dir,
            "--daemonize",
            "no",
        ]

    def start(self, timeout: float = 10.0) -> Redis:
        self.spawn()
        wait_port("127.0.0.1", self.port, timeout, self.proc)
        return self


class App(Child):
    """``api/app.py`` as the engine or an edge; ``start`` waits for ``/health``."""

    def __init__(self, run_dir: str, name: str, port: int, args: list[str]) -> None:
        self.name = name
        super().__init__(run_dir)
        self.port = port
        self.args = args
        self.url = f"http://127.0.0.1:{port}"

    def command(self) -> list[str]:
        script = os.path.join(ROOT, "api", "app.py")
        return [sys.executable, script, "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def start(self, timeout: float = 30.0) -> App:
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /health in {timeout}s: {self.output()[-2000:]}")


class Nginx(Child):
    """Debian's nginx in the foreground with its own nginx.conf, logs and temp paths."""

    name = "nginx"

    def __init__(self, run_dir: str, host: str, port: int, engine: str, edges: list[str]) -> None:
        super().__init__(run_dir)
        self.host = host
        self.port = port
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        self.conf = os.path.join(run_dir, "nginx.conf")
        self.site = os.path.join(run_dir, "matchbook-site.conf")
        self.engine = engine
        self.edges = edges

    def write_config(self) -> None:
        os.makedirs(os.path.join(self.run_dir, "nginx-tmp"), exist_ok=True)
        with open(self.site, "w", encoding="utf-8") as f:
            f.write(render_site(f"{self.host}:{self.port}", self.engine, self.edges))
        tmp = os.path.join(self.run_dir, "nginx-tmp")
        user = "user root;\n" if os.geteuid() == 0 else ""
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(
                f"{user}worker_processes 1;\n"
                "daemon off;\n"
                f"pid {self.run_dir}/nginx.pid;\n"
                f"error_log {self.run_dir}/nginx-error.log warn;\n"
                "worker_rlimit_nofile 16384;\n"
                "events { worker_connections 8192; }\n"
                "http {\n"
                "    access_log off;\n"
                f"    client_body_temp_path {tmp}/body;\n"
                f"    proxy_temp_path {tmp}/proxy;\n"
                f"    fastcgi_temp_path {tmp}/fastcgi;\n"
                f"    uwsgi_temp_path {tmp}/uwsgi;\n"
                f"    scgi_temp_path {tmp}/scgi;\n"
                "    types { text/html html; application/javascript js; text/css css; }\n"
                f"    include {self.site};\n"
                "}\n"
            )

    def command(self) -> list[str]:
        return [
            NGINX,
            "-p",
            self.run_dir,
            "-c",
            self.conf,
            "-e",
            os.path.join(self.run_dir, "nginx-error.log"),
        ]

    def start(self, timeout: float = 10.0) -> Nginx:
        self.write_config()
        check = subprocess.run([*self.command(), "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {check.stderr}")
        self.spawn()
        wait_port("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host, self.port, timeout, self.proc)
        return self


def missing_tools() -> list[str]:
    """The Debian programs a cluster needs that this machine lacks."""
    return [p for p in (REDIS_SERVER, NGINX) if not (os.path.exists(p) or shutil.which(os.path.basename(p)))]


class Cluster:
    """Redis, the engine, ``edges`` edges and nginx; ``start`` in that order,
    ``stop`` in reverse. Every port free-picked unless given."""

    def __init__(
        self,
        run_dir: str,
        data_dir: str,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        edges: int = 2,
        engine_port: int | None = None,
        edge_port: int | None = None,
        redis_port: int | None = None,
        engine_args: list[str] | None = None,
        edge_args: list[str] | None = None,
        edge_nice: int = 0,
    ) -> None:
        self.run_dir = os.path.abspath(run_dir)
        self.data_dir = os.path.abspath(data_dir)
        self.redis = Redis(self.run_dir, redis_port or free_port())
        # Behind nginx every connection comes from nginx's address: the per-address
        # connection cap is nginx's to enforce (the per-client Socket.IO limits still
        # apply, to the address X-Forwarded-For names).
        queue = ["--message-queue", self.redis.url, "--proxy-hops", "1", "--max-connections-per-client", "0"]
        self.engine = App(
            self.run_dir,
            "engine",
            engine_port or free_port(),
            ["--data-dir", self.data_dir, *queue, *(engine_args or [])],
        )
        self.edges = [
            App(
                self.run_dir,
                f"edge{i + 1}",
                (edge_port + i) if edge_port else free_port(),
                ["--role", "edge", *queue, *(edge_args or [])],
            )
            for i in range(edges)
        ]
        for edge in self.edges:
            edge.nice = edge_nice
        self.nginx = Nginx(
            self.run_dir,
            host,
            port or free_port(),
            f"127.0.0.1:{self.engine.port}",
            [f"127.0.0.1:{e.port}" for e in self.edges],
        )

    @property
    def url(self) -> str:
        return self.nginx.url

    def children(self) -> list[Child]:
        return [self.redis, self.engine, *self.edges, self.nginx]

    def start(self) -> Cluster:
        try:
            self.redis.start()
            self.engine.start()
            for edge in self.edges:
                edge.start()
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        self.record()
        return self

    def record(self) -> None:
        pids = [{"name": c.name, "pid": c.pid, "cmd": c.command()} for c in self.children() if c.pid]
        with open(os.path.join(self.run_dir, "pids.json"), "w", encoding="utf-8") as f:
            json.dump(pids, f, indent=1)

    def stop(self) -> None:
        for child in reversed(self.children()):
            try:
                child.stop()
            except Exception as exc:  # go on stopping the others
                print(f"stopping {child.name} failed: {exc}", file=sys.stderr)
        try:
            os.remove(os.path.join(self.run_dir, "pids.json"))
        except OSError:
            pass

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- command line ---------------------------------------------------------------
def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def _run(args: argparse.Namespace) -> int:
    missing = missing_tools()
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install -y redis-server nginx)", file=sys.stderr)
        return 2
    run_dir = os.path.abspath(args.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    pid_file = os.path.join(run_dir, "cluster.pid")
    if os.path.exists(pid_file):
        with open(pid_file) as f:
            old = int(f.read().strip() or 0)
        if old and _cmdline(old) and "cluster.py" in " ".join(_cmdline(old)):
            print(f"a cluster already runs from {run_dir} (pid {old}); make cluster-stop", file=sys.stderr)
            return 1
    extra = args.engine_args[1:] if args.engine_args[:1] == ["--"] else args.engine_args
    cluster = Cluster(
        run_dir,
        args.data_dir,
        port=args.port,
        host=args.host,
        edges=args.edges,
        engine_port=args.engine_port,
        edge_port=args.edge_port,
        redis_port=args.redis_port,
        engine_args=extra,
        edge_nice=args.edge_nice,
    )
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    try:
        cluster.start()
        print(
            f"cluster up: {cluster.url}  (engine {cluster.engine.url}, edges "
            f"{', '.join(e.url for e in cluster.edges)}, redis {cluster.redis.url})"
        )
        print(f"logs and pids in {run_dir}; Ctrl-C or `make cluster-stop` stops it")
        sys.stdout.flush()
        while True:
            time.sleep(1)
            for child in cluster.children():
                if (
                    child.proc is not None
                    and child.proc.poll() is not None
                    and not getattr(child, "_reported", False)
                ):
                    child._reported = True
                    print(
                        f"{child.name} (pid {child.pid}) exited with {child.proc.returncode}; see {child.log_path}"
                    )
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"cluster failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping the cluster")
        cluster.stop()
        try:
            os.remove(pid_file)
        except OSError:
            pass
        print("cluster stopped")
    return 0


def _stop(args: argparse.Namespace) -> int:
    run_dir = os.path.abspath(args.run_dir)
    pid_file = os.path.join(run_dir, "cluster.pid")
    stopped = False
    if os.path.exists(pid_file):
        with open(pid_file) as f:
            pid = int(f.read().strip() or 0)
        cmd = _cmdline(pid) if pid else None
        if cmd and "cluster.py" in " ".join(cmd):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while _cmdline(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            stopped = True
    pids_file = os.path.join(run_dir, "pids.json")
    if os.path.exists(pids_file):  # the supervisor died without stopping its children
        with open(pids_file) as f:
            children = json.load(f)
        for child in reversed(children):
            if _cmdline(child["pid"]) == child["cmd"]:
                os.kill(child["pid"], signal.SIGTERM)
                print(f"stopped {child['name']} (pid {child['pid']})")
                stopped = True
        os.remove(pids_file)
    print("cluster stopped" if stopped else f"no cluster runs from {run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deploy/cluster.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="start Redis, the engine, the edges and nginx; stop them on Ctrl-C")
    r.add_argument("--host", default="127.0.0.1", help="nginx's address (the only public one)")
    r.add_argument("--port", type=int, default=8080, help="nginx's port")
    r.add_argument("--edges", type=int, default=2)
    r.add_argument("--engine-port", type=int, default=5000)
    r.add_argument("--edge-port", type=int, default=5001, help="the first edge's port; the next ones follow")
    r.add_argument("--redis-port", type=int, default=6380)
    r.add_argument(
        "--edge-nice",
        type=int,
        default=0,
        help="run the edges at this niceness (e.g. 10: the engine first when they share cores)",
    )
    r.add_argument("--data-dir", default="./data")
    r.add_argument("--run-dir", default="./cluster-run")
    r.add_argument("engine_args", nargs=argparse.REMAINDER, help="after --: more arguments for the engine")
    s = sub.add_parser("stop", help="stop the cluster started from --run-dir, by PID")
    s.add_argument("--run-dir", default="./cluster-run")
    n = sub.add_parser("nginx-site", help="print the nginx site for these addresses")
    n.add_argument("--listen", default="80")
    n.add_argument("--engine", required=True, help="HOST:PORT of the engine process")
    n.add_argument("--edge", action="append", required=True, help="HOST:PORT of an edge (repeat)")
    args = p.parse_args(argv)
    if args.cmd == "run":
        return _run(args)
    if args.cmd == "stop":
        return _stop(args)
    sys.stdout.write(render_site(args.listen, args.engine, args.edge))
    return 0


if __name__ == "__main__":
    sys.exit(main())
