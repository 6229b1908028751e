"""Snapshots at an interval on a background thread, kept in a bounded ring for live views."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import msgspec

from appliance.machine.snapshot import MachineProbe, MachineSnapshot

log = logging.getLogger(__name__)


class MachineSampler:
    """Takes a snapshot every ``interval`` seconds and keeps the last ``keep`` of them.

    Walking the data directory costs more than reading counters, so disk use is measured every
    ``disk_every`` seconds and carried into the snapshots in between. ``on_snapshot`` sees every snapshot
    as it is taken, one at a time, for a reader that sums more of them than the ring keeps.
    """

    def __init__(
        self,
        probe: MachineProbe,
        interval: float = 1.0,
        keep: int = 600,
        disk_every: float = 60.0,
        on_snapshot: Callable[[MachineSnapshot], None] | None = None,
    ):
        if interval <= 0 or keep < 1:
            raise ValueError("interval must be positive and keep at least 1")
        self.probe = probe
        self.interval = interval
        self.disk_every = disk_every
        self._on_snapshot = on_snapshot
        self._ring: deque[MachineSnapshot] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._sampling = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._disk_measured_at: float | None = None

    def sample(self) -> MachineSnapshot:
        """Take one snapshot now and add it to the ring."""
        with self._sampling:  # the probe measures CPU between its own readings: one reader at a time
            now = time.monotonic()
            measure_disk = self._disk_measured_at is None or now - self._disk_measured_at >= self.disk_every
            snapshot = self.probe.read(measure_disk=measure_disk)
            if measure_disk:
                self._disk_measured_at = now
            else:
                last = self.latest()
                snapshot = msgspec.structs.replace(snapshot, disk=last.disk if last else None)
            with self._lock:
                self._ring.append(snapshot)
            if self._on_snapshot is not None:
                self._on_snapshot(snapshot)
            return snapshot

    def snapshots(self) -> list[MachineSnapshot]:
        """The ring's snapshots, oldest first."""
        with self._lock:
            return list(self._ring)

    def latest(self) -> MachineSnapshot | None:
        with self._lock:
            return self._ring[-1] if self._ring else None

    def start(self) -> MachineSampler:
        """Start sampling on a daemon thread; the first snapshot comes one interval from now."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="machine-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and release NVML; the ring stays readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.probe.close()

    def __enter__(self) -> MachineSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a failed reading (a vanished data directory) must not end live telemetry
                log.exception("machine snapshot failed; sampling goes on")
