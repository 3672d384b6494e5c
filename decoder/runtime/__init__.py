"""What generated kernels import at run time: status codes (``abi``), bit readers (``bits``),
JavaScript number semantics (``jsmath``).

``bits`` and ``jsmath`` import numba; nothing outside a kernel's import path should import them
eagerly.
"""
