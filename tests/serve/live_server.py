"""A real `vary serve` process on a free port, for the tests and bench/bench_serve.py.

`LiveServer` runs `python -m vary_cli serve ... --port 0`, reads the URL from its start-up line, keeps
its stderr (the access log and notices) and stops it with SIGTERM, or SIGKILL when a test asks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
STARTED = re.compile(r"vary serve: (http://\S+?)/ ")


class LiveServer:
    def __init__(self, *args: str, env: dict | None = None, timeout: float = 180.0) -> None:
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "vary_cli", "serve", "--port", "0", *args],
                                        env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout) or self.url is None:
            self.stop()
            raise RuntimeError("vary serve did not start:\n" + "\n".join(self.lines[-30:]))
        deadline = time.monotonic() + 30
        while httpx.get(f"{self.url}/healthz").status_code != 200:  # the lifespan has started the engines
            if time.monotonic() > deadline:
                raise RuntimeError("vary serve never became healthy")
            time.sleep(0.1)

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            found = STARTED.search(line)
            if found:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ThreadServer:
    """uvicorn serving an ASGI app on a free port in a thread of this process (for fake-engine servers)."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)

    def __enter__(self) -> "ThreadServer":
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


def follow_events(client: httpx.Client, url: str, headers: dict | None = None, timeout: float = 300.0) -> list[dict]:
    """Every event of a job's SSE stream until `done`: [{"event", "id", "data"}]."""
    import json

    events, block = [], {}
    with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line:
                if "event" in block:
                    events.append({**block, "data": json.loads(block["data"])})
                    if block["event"] == "done":
                        return events
                block = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                block[name] = value
    return events
