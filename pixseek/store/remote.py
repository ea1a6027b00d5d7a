"""The store of a running `pixseek serve`, used by local commands while the server holds it.

The embedded store can be open in one process only. While `pixseek serve` runs on a data dir,
`open_store` in every other local process (`pixseek ingest`, `search`, `collections`, workers)
returns a RemoteStore: the same VectorStore interface, each call sent to the server's private
/_store routes with the data dir's secret (pixseek/serverfile.py). The command itself runs as
it does alone (same code, output, progress and exit codes); only the store calls travel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from qdrant_client import models

from pixseek.errors import ServiceUnavailable
from pixseek.serverfile import SECRET_HEADER, ServerAddress
from pixseek.store import wire
from pixseek.store.base import (
    CollectionInfo,
    Hit,
    IndexStatus,
    PointRecord,
    SearchRequest,
    StoredPoint,
    check_collection_name,
)
from pixseek.store.options import StorageOptions

UPSERT_BATCH = 256  # points per request: ~1.5 MB of JSON at 512 dimensions


class RemoteStore:
    def __init__(self, address: ServerAddress, timeout: float = 600.0) -> None:
        self.address = address
        self.client = httpx.Client(
            base_url=f"{address.url}/_store",
            headers={SECRET_HEADER: address.secret},
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def _post(self, op: str, **body: Any) -> Any:
        try:
            response = self.client.post(f"/{op}", json=body)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the pixseek server at {self.address.url} (pid {self.address.pid}) holds this "
                f"data dir but did not answer: {exc}"
            ) from None
        return self._result(response)

    def _result(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                data = response.json()
            except ValueError:
                data = {"detail": response.text[:200]}
            raise wire.error_in(data, response.status_code)
        return response.json()

    def list_collections(self) -> list[CollectionInfo]:
        return [wire.info_in(i) for i in self._post("list_collections")]

    def get_collection(self, name: str) -> CollectionInfo | None:
        found = self._post("get_collection", name=check_collection_name(name))
        return None if found is None else wire.info_in(found)

    def create_collection(
        self,
        name: str,
        vectors: dict[str, int],
        metadata: dict[str, Any],
        storage: StorageOptions | None = None,
    ) -> CollectionInfo:
        storage_dict = (storage or StorageOptions()).as_dict()
        created = self._post(
            "create_collection", name=name, vectors=vectors, metadata=metadata, storage=storage_dict
        )
        return wire.info_in(created)

    def drop_collection(self, name: str) -> bool:
        return bool(self._post("drop_collection", name=name))

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [wire.point_out(p) for p in points[start : start + UPSERT_BATCH]]
            self._post("upsert", name=name, points=batch)

    def set_payload(self, name: str, point_id: str, payload: dict[str, Any]) -> None:
        self._post("set_payload", name=name, point_id=point_id, payload=payload)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._post("delete", name=name, ids=list(ids))

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[StoredPoint]:
        found = self._post("retrieve", name=name, ids=list(ids), with_vectors=with_vectors)
        return [wire.stored_in(p) for p in found]

    def scroll(
        self,
        name: str,
        fields: Sequence[str] | None = None,
        filter: models.Filter | None = None,
        page_size: int = 1000,
    ) -> Iterator[StoredPoint]:
        body = {
            "name": name,
            "fields": None if fields is None else list(fields),
            "filter": wire.filter_out(filter),
            "page_size": page_size,
        }
        try:
            with self.client.stream("POST", "/scroll", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    self._result(response)
                for line in response.iter_lines():
                    if line:
                        yield wire.stored_in(json.loads(line))
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the pixseek server at {self.address.url} stopped answering: {exc}"
            ) from None

    def count(self, name: str, filter: models.Filter | None = None) -> int:
        return int(self._post("count", name=name, filter=wire.filter_out(filter)))

    def search(self, name: str, request: SearchRequest) -> list[Hit]:
        found = self._post("search", name=name, request=wire.request_out(request))
        return [wire.hit_in(h) for h in found]

    def optimize(self, name: str) -> IndexStatus:
        """The server builds the index in the background: this reports where it stands."""
        return wire.index_in(self._post("optimize", name=name))

    def close(self) -> None:
        self.client.close()
