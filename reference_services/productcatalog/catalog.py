"""The product catalog: loaded from ``products.json``, looked up and searched."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from reference_services.protos import hipstershop_pb2 as pb

DATA_FILE = Path(__file__).with_name("products.json")
MAX_QUERY = 256


def load(path: Path = DATA_FILE) -> list[pb.Product]:
    """Read and parse the catalog file (products in file order)."""
    records = json.loads(path.read_text(encoding="utf-8"))
    return [json_format.ParseDict(record, pb.Product()) for record in records]


class Catalog:
    """The products, by id and in order."""

    def __init__(self, products: list[pb.Product]) -> None:
        self.products = products
        self._by_id = {p.id: p for p in products}

    @classmethod
    def from_file(cls, path: Path = DATA_FILE) -> Catalog:
        """The catalog held in ``path``."""
        return cls(load(path))

    def get(self, product_id: str) -> pb.Product | None:
        """The product with this id, or None."""
        return self._by_id.get(product_id)

    def search(self, query: str) -> list[pb.Product]:
        """Products whose name or description contains ``query``, ignoring case."""
        needle = query.casefold()
        return [
            p
            for p in self.products
            if needle in p.name.casefold() or needle in p.description.casefold()
        ]
