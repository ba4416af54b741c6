"""The latency proxy (bench/tools/latency-proxy.c): a database across a network.

On this machine PostgreSQL answers in under 0.1 ms, so a run cannot see round trips;
in production (RDS, Aurora from a Lambda in the same VPC) each costs 0.3-1 ms. The proxy
listens on 127.0.0.1, forwards to the database and holds every chunk for a fixed delay
each way (RTT = 2 x delay), pipelined traffic staying pipelined; it counts the client's
round trips (a client→server chunk answered by a server→client chunk) in a small
counter file. The delay can be changed between batches without reconnecting, so the
contenders at different RTTs take turns on the same connections' proxy.

It is compiled with `cc` on first use (into the temporary directory) and exits with
the process that started it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "tools" / "latency-proxy.c"
TURNS, DELAY_NS = 0, 7


class ProxyUnavailable(RuntimeError):
    """No C compiler, or the proxy did not start: the RTT lines read n/a."""


def _binary() -> Path:
    digest = hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"cdc-bench-latency-proxy-{digest}"
    if binary.exists():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ProxyUnavailable("no C compiler (cc) to build bench/tools/latency-proxy.c")
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    built = subprocess.run(
        [compiler, "-O2", "-pthread", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        raise ProxyUnavailable(f"cc failed to build the latency proxy: {built.stderr[-500:]}")
    partial.replace(binary)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LatencyProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        binary = _binary()
        self._dir = tempfile.mkdtemp(prefix="cdc-bench-proxy-")
        self._counters = Path(self._dir) / "counters"
        self.port = _free_port()
        command = [str(binary), str(self.port), target_host, str(target_port), "0"]
        command.append(str(self._counters))
        # Real-time priority steadies its timing where allowed (root); plain otherwise.
        chrt = shutil.which("chrt")
        self._proc: subprocess.Popen[bytes] | None = None
        for prefix in ([chrt, "-f", "10"] if chrt else [], []):
            proc = subprocess.Popen([*prefix, *command], stderr=subprocess.PIPE)
            if self._listening(proc):
                self._proc = proc
                self.realtime = bool(prefix)
                break
            proc.kill()
            proc.wait()
        if self._proc is None:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise ProxyUnavailable("the latency proxy did not start listening")
        self.set_rtt_ms(0.0)

    def _listening(self, proc: subprocess.Popen[bytes]) -> bool:
        for _ in range(100):
            if proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.02)
                continue
            return self._counters.exists()
        return False

    def _slot(self, index: int) -> int:
        with open(self._counters, "rb") as f:
            data = f.read(64)
        return int(struct.unpack("<8q", data)[index])

    def turns(self) -> int:
        """Round trips so far, all connections through the proxy together."""
        return self._slot(TURNS)

    def set_rtt_ms(self, rtt_ms: float) -> None:
        """The delay of every chunk from now on: RTT/2 each way; 0 → no delay."""
        delay_ns = int(rtt_ms * 1e6 / 2) if rtt_ms > 0 else -1
        with open(self._counters, "r+b") as f:
            f.seek(DELAY_NS * 8)
            f.write(struct.pack("<q", delay_ns))

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
