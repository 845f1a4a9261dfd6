"""SIGINT, SIGTERM and SIGHUP end a run the same clean way.

A terminal's Ctrl-C reaches the whole process group, skopeo included; `podman build` being
cancelled, `timeout`, systemd or a CI runner send SIGTERM (or SIGHUP) to bindimg alone. Either
way bindimg kills the skopeo processes it started (none may go on writing into the root after
bindimg is gone), unwinds (every `finally` and undo runs: temporary data removed, a half-done
change taken back), and then dies of the same signal, so that its caller sees what happened.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """Raised in the main thread by a terminating signal; not an Exception: no error handler
    may take it for a failure and carry on."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _handler(signum: int, frame: Optional[FrameType]) -> None:
    # The first signal wins; later ones must not break the clean-up it starts.
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # Looked up, not imported (no import in a signal handler): no skopeo runs before its
    # module is loaded, and `--version`, `-h` or `lint` need not load it.
    skopeo = sys.modules.get("bindimg.skopeo")
    if skopeo is not None:
        skopeo.kill_children()
    raise Interrupted(signum)


def run(main: Callable[[], None]) -> None:
    """Call `main` with the handlers installed; on a signal, clean up and die of it."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    try:
        main()
    except Interrupted as stop:
        signal.signal(stop.signum, signal.SIG_DFL)
        os.kill(os.getpid(), stop.signum)
        raise SystemExit(128 + stop.signum) from None  # only if the signal did not end us
