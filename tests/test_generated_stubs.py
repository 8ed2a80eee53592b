"""The committed protobuf code is exactly what its ``.proto`` compiles to."""

from __future__ import annotations

from pathlib import Path

from reference_services.protos import generate


def test_the_committed_stubs_match_their_protos(tmp_path: Path) -> None:
    assert generate.generate(tmp_path) == 0
    stale = [
        name
        for name in generate.generated_files()
        if (tmp_path / name).read_bytes() != (generate.ROOT / name).read_bytes()
    ]
    assert not stale, (
        f"{stale} differ from their .proto: run `python -m reference_services.protos.generate` "
        "(with the grpcio-tools the boutique extra pins) and commit the result"
    )


def test_a_changed_proto_is_caught(tmp_path: Path) -> None:
    # the comparison sees a difference when there is one: a proto with one field more
    proto = tmp_path / "reference_services/protos/hipstershop.proto"
    proto.parent.mkdir(parents=True)
    original = (generate.ROOT / "reference_services/protos/hipstershop.proto").read_text()
    proto.write_text(original.replace("message Empty {}", "message Empty { string extra = 1; }"))
    assert proto.read_text() != original
    out = tmp_path / "out"
    out.mkdir()
    changed = {"reference_services/protos/hipstershop.proto": True}
    assert generate.generate(out, tmp_path, changed) == 0
    name = "reference_services/protos/hipstershop_pb2.py"
    assert (out / name).read_bytes() != (generate.ROOT / name).read_bytes()
