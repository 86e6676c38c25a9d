#!/usr/bin/env python3
"""Run a Python script under a CPU-time stack sampler, for profiling a server
process under load (py-spy is not installed here; cProfile distorts eventlet's
green threads and costs far more).

    python tests/loadlib/pysampler.py OUT.txt api/app.py --role edge ...

Every ``interval`` of CPU time (``ITIMER_PROF``, 2 ms) the signal handler
records the running Python stack (whichever green thread is running: under
eventlet all run in the main OS thread). At exit (normal, ``sys.exit`` or the
server's own SIGTERM handling) it writes to OUT.txt the functions by *self*
samples (the frame on top) and *inclusive* samples (anywhere on the stack),
and the most frequent 6-frame stacks. Time in C code and system calls counts
for the Python frame that called it (``sendall``'s system call shows as
``base.py:_send_loop``).
"""

from __future__ import annotations

import atexit
import collections
import os
import runpy
import signal
import sys

INTERVAL = 0.002


def main() -> None:
    out, script = sys.argv[1], sys.argv[2]
    own = collections.Counter()
    inclusive = collections.Counter()
    stacks = collections.Counter()
    total = [0]

    def sample(signum, frame) -> None:
        total[0] += 1
        seen = set()
        chain = []
        top = True
        while frame is not None:
            code = frame.f_code
            key = f"{os.path.basename(code.co_filename)}:{code.co_name}"
            if top:
                own[key] += 1
                top = False
            if key not in seen:
                inclusive[key] += 1
                seen.add(key)
            if len(chain) < 6:
                chain.append(key)
            frame = frame.f_back
        stacks[" <- ".join(chain)] += 1

    def dump() -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        n = max(1, total[0])
        with open(out, "w") as f:
            f.write(f"samples {total[0]} (every {INTERVAL * 1e3:g} ms of CPU)\n== self\n")
            for key, count in own.most_common(40):
                f.write(f"{count:7d} {100 * count / n:5.1f}% {key}\n")
            f.write("== inclusive\n")
            for key, count in inclusive.most_common(60):
                f.write(f"{count:7d} {100 * count / n:5.1f}% {key}\n")
            f.write("== stacks (6 frames, innermost first)\n")
            for key, count in stacks.most_common(30):
                f.write(f"{count:7d} {100 * count / n:5.1f}% {key}\n")

    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    atexit.register(dump)
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(script))))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
