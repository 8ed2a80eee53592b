"""Regenerate the project's committed protobuf code from its ``.proto`` files.

Run from the repository root: ``python -m reference_services.protos.generate``.
Each proto is compiled with ``-I <root>`` so the generated modules import each other
by their package path (``reference_services.protos.hipstershop_pb2``). The output names
the grpcio-tools and protobuf versions that wrote it, so the ``boutique`` extra pins
grpcio-tools exactly; ``tests/test_generated_stubs.py`` fails when the committed files
differ from what this writes. The services' typed stubs (``*_pb2_grpc.pyi``, which
grpcio-tools does not write) come from mypy-protobuf's ``protoc-gen-mypy_grpc`` plugin,
pinned beside it.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
# installed with mypy-protobuf beside this interpreter
MYPY_GRPC = Path(sysconfig.get_path("scripts")) / "protoc-gen-mypy_grpc"
# proto -> whether it has services (a *_pb2_grpc.py module)
PROTOS = {
    "reference_services/protos/hipstershop.proto": True,
    "reference_services/protos/boutique/v1/notification.proto": True,
    "reference_services/protos/boutique/v1/events.proto": False,
    "reference_services/protos/boutique/v1/user.proto": True,
    "reference_services/protos/boutique/v1/order.proto": True,
    "reference_services/protos/boutique/v1/inventory.proto": True,
    "reference_services/protos/boutique/v1/ledger.proto": True,
    "reference_services/protos/boutique/v1/shipment.proto": True,
    "clue/debug/pprof/profile.proto": False,
}


def generated_files() -> list[str]:
    """The committed files :func:`generate` writes, relative to the repository root."""
    names = []
    for proto, has_services in PROTOS.items():
        stem = proto.removesuffix(".proto")
        names += [f"{stem}_pb2.py", f"{stem}_pb2.pyi"]
        names += [f"{stem}_pb2_grpc.py", f"{stem}_pb2_grpc.pyi"] if has_services else []
    return names


def generate(out: Path = ROOT, root: Path = ROOT, protos: Mapping[str, bool] = PROTOS) -> int:
    """Compile ``protos`` under ``root`` into ``out``; protoc's exit code (0: all compiled)."""
    for proto, has_services in protos.items():
        args = ["grpc_tools.protoc", f"-I{root}", f"--python_out={out}", f"--pyi_out={out}"]
        if has_services:
            args += [f"--grpc_python_out={out}", f"--plugin=protoc-gen-mypy_grpc={MYPY_GRPC}"]
            args += [f"--mypy_grpc_out={out}"]
        code = int(protoc.main([*args, str(root / proto)]))
        if code != 0:
            print(f"protoc failed on {proto} with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(generate())
