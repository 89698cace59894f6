"""A real S3-compatible server for the tests: moto's standalone server in its own process on a free
port, and a TCP proxy in front of it that can go down (mid-request) and come back, for outage tests.

The clients find it the way users point them at any S3-compatible server: ``AWS_ENDPOINT_URL`` and
the usual credential variables in the environment (:func:`s3_environment`, which the ``s3_server`` fixture in
conftest and the README test use).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout} s") from None
            time.sleep(0.1)


class MotoServer:
    """``python -m moto.server`` on a free port: a fresh, empty S3 for this test session."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise
        self._prefixes = itertools.count(1)

    def new_url(self, bucket: str, what: str = "store") -> str:
        """A fresh prefix in ``bucket``: each store of a test starts empty."""
        return f"s3://{bucket}/{what}-{next(self._prefixes):04d}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def s3_environment(cache: os.PathLike, *buckets: str):
    """A :class:`MotoServer` with ``buckets``, and the environment every client (and Ray started later, and its
    workers) finds it by: AWS_ENDPOINT_URL, test credentials, no profile; the node cache in ``cache``. The
    environment is restored afterwards."""
    server = MotoServer()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": server.endpoint, "AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": None,
           "AWS_SESSION_TOKEN": None, "TRANSLATE_CACHE": str(cache)}
    saved = {k: os.environ.get(k) for k in env}
    _set_env(env)
    try:
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        for bucket in buckets:
            fs.mkdir(bucket)
        yield server
    finally:
        server.stop()
        _set_env(saved)


def _set_env(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class TcpProxy:
    """Forwards 127.0.0.1:port to ``target_port``. ``cut_when(pattern)``: the first client bytes that
    contain ``pattern`` are dropped, every connection is closed and the port stops listening (clients
    get 'connection refused', as from a server that went away) until ``up()``."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pattern: bytes | None = None
        self.cut = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self.pattern = None
        self.cut.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut_when(self, pattern: bytes) -> None:
        self.pattern = pattern

    def down(self) -> None:
        self.cut.set()
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self.cut.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client and self.pattern is not None and self.pattern in data:
                        self.down()  # the request never reaches the server
                        return
                    peers[s].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self.down()
