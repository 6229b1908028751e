"""Starting the processes the appliance spawns (the prediction log's writer, a training worker) so that a
terminal's Ctrl-C cannot kill one half-started.

A terminal sends Ctrl-C to the whole foreground process group, the spawned processes included. One arriving
while a child is still starting up (Python importing, unpickling its target), before the child has set its own
handlers, killed it with a KeyboardInterrupt traceback: a 'Fatal Python error', or a lost run. A child started
here inherits SIGINT and SIGTERM blocked, and unblocks them once it handles them; one that came meanwhile is
delivered then, to its handler.
"""

from __future__ import annotations

import signal
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess

STOPS = {signal.SIGINT, signal.SIGTERM}


def start_shielded(process: BaseProcess) -> None:
    """Start a spawned ``process`` with the stop signals blocked; its target calls ``unblock_stops``."""
    # multiprocessing starts its resource tracker for the first process it spawns, and unblocks these signals
    # when it has: started first, it leaves the mask alone.
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def unblock_stops() -> None:
    """In a process ``start_shielded`` started, once its handlers for SIGINT and SIGTERM are set."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
