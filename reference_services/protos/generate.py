"""Regenerate the Python stubs from ``hipstershop.proto``.

Run from the repository root: ``python -m reference_services.protos.generate``.
The proto is compiled with ``-I .`` so the generated modules import each other
as ``reference_services.protos.hipstershop_pb2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO = "reference_services/protos/hipstershop.proto"


def main() -> int:
    """Compile the proto into ``*_pb2.py``, ``*_pb2_grpc.py`` and ``*_pb2.pyi``."""
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        str(ROOT / PROTO),
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
