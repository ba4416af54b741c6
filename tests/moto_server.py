"""moto in server mode, for running `cdc` as a user does: a separate process with real
boto3 clients reaching AWS through `AWS_ENDPOINT_URL`.

* `MotoServer`: a `moto_server` subprocess on a free 127.0.0.1 port (state is lost
  when it stops; `reset()` empties it between tests);
* `PausableProxy`: a small TCP proxy in front of it that can refuse connections and
  cut the live ones for a while and then accept again, while moto keeps its state:
  an AWS outage as a client meets it (connection refused, connection reset);
* the `moto_server` fixture (one server per test module) and `cdc_env` / `run_cdc`
  to run the CLI against it.

Import the fixture into a test module with `from tests.moto_server import moto_server`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REGION = "eu-central-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(self.port)
        except BaseException:
            self.stop()
            raise

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def client(self, service: str) -> Any:
        """A boto3 client of the test itself, straight to moto (not through a proxy)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class PausableProxy:
    """A TCP proxy on its own port to `target_port`. `refuse()` stops listening and cuts
    every open connection (clients then get "connection refused"); `accept()` listens on
    the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self.accept()

    def accept(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._open = self._open, set()
        for sock in [*([listener] if listener else []), *connections]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept/recv
            sock.close()

    def close(self) -> None:
        self.refuse()

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # refused meanwhile
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server per test module, emptied before each use by `reset()`."""
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


def cdc_env(
    endpoint: str | None,
    database_url: str,
    schema: str | None = None,
    *,
    region: str | None = REGION,
    credentials: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a `cdc` process: only what a user would set, nothing from
    the developer's own AWS configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "CDC_", "BOTO"))
    }
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance metadata to wait for
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    if region is not None:
        env["AWS_DEFAULT_REGION"] = region
    if credentials:
        env.update(FAKE_CREDENTIALS)
    env["CDC_DATABASE_URL"] = database_url
    if schema is not None:
        env["CDC_SCHEMA"] = schema
    env.update(extra or {})
    return env


def run_cdc(
    *args: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cdc(*args: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A long-running `cdc` (tail): stdout and stderr go to `log`."""
    handle = log.open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cdc", *args],
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    finally:
        handle.close()


def database_url(engine: Any) -> str:
    """An engine's URL with its password, for a child process."""
    return str(engine.url.render_as_string(hide_password=False))
