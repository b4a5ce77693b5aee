"""Filtering known noise that TVM's native runtime writes to stderr.

TVM 0.27's VM executable logs ``Warning: Scope Loaded:`` (``Scope Saving:``) once per scope whenever a library is
loaded (exported): noise to a user. :func:`filtered_native_stderr` captures file descriptor 2 around such a call and
writes back every other line, so real native messages still reach the user.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

NOISE = ("Warning: Scope Loaded:", "Warning: Scope Saving:")


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not any(n in line for n in NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()
