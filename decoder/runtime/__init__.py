"""What kernels need at run time: status codes (``abi``), bit readers (``bits``) and JavaScript
number semantics (``jsmath``), which generated kernels import; and ``lean_load``, with which the
command's own process loads cached kernels without numba's preparations to compile.

``bits`` and ``jsmath`` import numba; nothing outside a kernel's import path should import them
eagerly.
"""
