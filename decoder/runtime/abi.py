"""The contract between generated kernels and the code that runs them: per-row status codes.

A kernel writes one of these into ``err[i]`` for every row; ``compile.batch``
turns them into reasons. They live apart from the code generator so that the
runtime side need not import the compiler.
"""

from __future__ import annotations

__all__ = ["ERR_OK", "ERR_TOO_SHORT", "ERR_INPUT"]

ERR_OK = 0  # decoded
ERR_TOO_SHORT = 1  # the payload ended before an element the row had to read
ERR_INPUT = 2  # the payload text was invalid before decoding (odd hex, bad base64, missing)
