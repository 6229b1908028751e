"""Running the API under uvicorn."""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from appliance.serving.app import create_app


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die by the
        # signal; a clean stop should exit 0 instead.
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._stop) for s in stops}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop(self, signum: int, frame: object) -> None:
        if self.should_exit and signum == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops without waiting
        self.should_exit = True


def serve(home_root: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until SIGINT or SIGTERM, finishing requests in flight, then return."""
    config = uvicorn.Config(create_app(home_root, exposed=not _loopback_only(host)), host=host, port=port,
                            log_level="warning",
                            access_log=False, timeout_graceful_shutdown=10)
    _Server(config).run()


def _loopback_only(host: str) -> bool:
    """Whether a bind address reaches loopback only ("localhost" counts; "0.0.0.0" and names do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
