"""A Qdrant server or cluster through qdrant-client.

`PIXSEEK_QDRANT_URL=http://host:6333` talks to a server. `local:/path` uses qdrant-client's
local mode (pure Python, the server's API): the test suite drives this backend through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from pixseek.errors import (
    CollectionExists,
    CollectionNotFound,
    ServiceUnavailable,
    StoreBusy,
    UserError,
)
from pixseek.store import server_query
from pixseek.store.base import (
    PAYLOAD_INDEXES,
    TEXT_VECTOR,
    Browse,
    CollectionInfo,
    FacetCount,
    Hit,
    IndexStatus,
    Nearest,
    PointRecord,
    RankFusion,
    SearchRequest,
    SparseVector,
    StoredPoint,
    as_list,
    check_collection_name,
    is_point_id,
    stored_point,
)
from pixseek.store.options import StorageOptions

LOCAL_PREFIX = "local:"
# The collection's StorageOptions ride in its metadata (search-time knobs such as oversampling
# have no place in Qdrant's own config); the vector config itself is what Qdrant applies.
STORAGE_KEY = "pixseek_storage"
_INDEX_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
}
_ON_DISK_INDEX_PARAMS = {
    "keyword": lambda: models.KeywordIndexParams(type="keyword", on_disk=True),
    "integer": lambda: models.IntegerIndexParams(
        type="integer", lookup=True, range=True, on_disk=True
    ),
    "float": lambda: models.FloatIndexParams(type="float", on_disk=True),
    "datetime": lambda: models.DatetimeIndexParams(type="datetime", on_disk=True),
    "text": lambda: models.TextIndexParams(type="text", on_disk=True),
}


def index_schema(kind: str, storage: StorageOptions) -> Any:
    """As the embedded store's: an on-disk collection keeps its payload indexes on disk too."""
    return _ON_DISK_INDEX_PARAMS[kind]() if storage.on_disk else _INDEX_TYPES[kind]


class ServerStore:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url
        if url.startswith(LOCAL_PREFIX):
            try:
                self.client = QdrantClient(path=url[len(LOCAL_PREFIX) :])
            except RuntimeError as exc:  # local mode: one process per folder
                raise StoreBusy(f"{url} is open in another process: {exc}") from None
        else:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=60)
        self._storage_cache: dict[str, StorageOptions] = {}

    def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ResponseHandlingException, ConnectionError) as exc:
            raise ServiceUnavailable(
                f"cannot reach Qdrant at {self.url}: {exc}; check PIXSEEK_QDRANT_URL"
            ) from None
        except UnexpectedResponse as exc:
            raise UserError(f"Qdrant at {self.url} refused the request: {exc}") from None

    def _require(self, name: str) -> None:
        check_collection_name(name)
        if not self._call(self.client.collection_exists, name):
            raise CollectionNotFound(name)

    def list_collections(self) -> list[CollectionInfo]:
        names = sorted(c.name for c in self._call(self.client.get_collections).collections)
        infos = [self.get_collection(name) for name in names]
        return [info for info in infos if info is not None]

    def get_collection(self, name: str) -> CollectionInfo | None:
        check_collection_name(name)
        if not self._call(self.client.collection_exists, name):
            return None
        info = self._call(self.client.get_collection, name)
        params = info.config.params.vectors or {}
        vectors = {k: v.size for k, v in params.items()} if isinstance(params, dict) else {}
        points = info.points_count or 0  # from the same call: no extra exact count per query
        metadata = dict(info.config.metadata or {})
        storage = StorageOptions.from_dict(metadata.pop(STORAGE_KEY, None))
        self._storage_cache[name] = storage
        return CollectionInfo(
            name=name,
            points=points,
            vectors=vectors,
            metadata=metadata,
            storage=storage,
            sparse_vectors=sorted(info.config.params.sparse_vectors or {}),
        )

    def _storage(self, name: str) -> StorageOptions:
        if name not in self._storage_cache:
            self.get_collection(name)
        return self._storage_cache.get(name, StorageOptions())

    def create_collection(
        self,
        name: str,
        vectors: dict[str, int],
        metadata: dict[str, Any],
        storage: StorageOptions | None = None,
    ) -> CollectionInfo:
        storage = (storage or StorageOptions()).validated()
        check_collection_name(name)
        if self._call(self.client.collection_exists, name):
            raise CollectionExists(name)
        self._call(
            self.client.create_collection,
            name,
            vectors_config={
                vec: server_query.vector_params(size, storage) for vec, size in vectors.items()
            },
            sparse_vectors_config={TEXT_VECTOR: server_query.SPARSE},
            on_disk_payload=storage.on_disk or None,
            metadata={**metadata, STORAGE_KEY: storage.as_dict()},
        )
        self._storage_cache[name] = storage
        if not self.url.startswith(LOCAL_PREFIX):  # local mode has no payload indexes
            for field_name, kind in PAYLOAD_INDEXES.items():
                schema = index_schema(kind, storage)
                self._call(self.client.create_payload_index, name, field_name, schema)
        return CollectionInfo(
            name=name,
            points=0,
            vectors=dict(vectors),
            metadata=metadata,
            storage=storage,
            sparse_vectors=[TEXT_VECTOR],
        )

    def update_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        self._require(name)
        storage = self._storage(name)
        self._call(
            self.client.update_collection,
            name,
            metadata={**metadata, STORAGE_KEY: storage.as_dict()},
        )

    def drop_collection(self, name: str) -> bool:
        check_collection_name(name)
        if not self._call(self.client.collection_exists, name):
            return False
        self._storage_cache.pop(name, None)
        self._call(self.client.delete_collection, name)
        return True

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(
                id=p.id,
                vector={vec: server_query.vec(v) for vec, v in p.vectors.items()},
                payload=p.payload,
            )
            for p in points
        ]
        self._call(self.client.upsert, name, points=structs, wait=True)

    def set_payload(self, name: str, point_id: str, payload: dict[str, Any]) -> None:
        self._call(self.client.set_payload, name, payload=payload, points=[point_id], wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._call(
                self.client.delete,
                name,
                points_selector=models.PointIdsList(points=list(ids)),
                wait=True,
            )

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[StoredPoint]:
        self._require(name)
        valid = [i for i in ids if is_point_id(i)]
        if not valid:
            return []
        records = self._call(
            self.client.retrieve, name, ids=valid, with_payload=True, with_vectors=with_vectors
        )
        return [stored_point(r, with_vectors) for r in records]

    def scroll(
        self,
        name: str,
        fields: Sequence[str] | None = None,
        filter: models.Filter | None = None,
        page_size: int = 1000,
    ) -> Iterator[StoredPoint]:
        self._require(name)
        with_payload: Any = list(fields) if fields is not None else True
        offset = None
        while True:
            records, offset = self._call(
                self.client.scroll,
                name,
                scroll_filter=filter,
                limit=page_size,
                offset=offset,
                with_payload=with_payload,
                with_vectors=False,
            )
            for record in records:
                yield stored_point(record, False)
            if offset is None:
                return

    def count(self, name: str, filter: models.Filter | None = None) -> int:
        self._require(name)
        return self._call(self.client.count, name, count_filter=filter, exact=True).count

    def search(self, name: str, request: SearchRequest) -> list[Hit]:
        self._require(name)
        plan = request.plan
        # Local mode always searches exactly and warns about search params: send none there.
        local = self.url.startswith(LOCAL_PREFIX)
        params = None if local else server_query.search_params(self._storage(name))
        kwargs: dict[str, Any] = {
            "limit": request.limit,
            "offset": request.offset,
            "with_payload": True,
        }
        if isinstance(plan, RankFusion):
            kwargs["prefetch"] = [
                models.Prefetch(
                    query=server_query.vec(s.vector),
                    using=s.using,
                    filter=request.filter,
                    limit=max(plan.candidates, request.limit + request.offset),
                    score_threshold=request.threshold,
                    params=None if isinstance(s.vector, SparseVector) else params,
                )
                for s in plan.searches
            ]
            kwargs["query"] = server_query.fusion(plan)
            if request.diversity is not None:  # MMR re-picks among the fused candidates
                fused = models.Prefetch(
                    prefetch=kwargs["prefetch"],
                    query=kwargs["query"],
                    limit=request.diversity_candidates,
                )
                kwargs["prefetch"] = [fused]
                kwargs["query"] = server_query.mmr(request, request.diversity_vector)
                kwargs["using"] = plan.searches[0].using
        else:
            kwargs["query_filter"] = request.filter
            kwargs["score_threshold"] = request.threshold
            kwargs["using"] = plan.using
            kwargs["search_params"] = params
            if isinstance(plan, Nearest):
                kwargs["query"] = server_query.vec(plan.vector)
                if isinstance(plan.vector, SparseVector):
                    kwargs["search_params"] = None
                if request.diversity is not None:
                    kwargs["query"] = server_query.mmr(request, plan.vector)
            elif request.diversity is not None:
                raise ValueError("diversity needs a Nearest plan (the engine sends one)")
            else:
                kwargs["query"] = models.RecommendQuery(
                    recommend=models.RecommendInput(
                        positive=[as_list(v) for v in plan.positives],
                        negative=[as_list(v) for v in plan.negatives],
                        strategy=models.RecommendStrategy.SUM_SCORES,
                    )
                )
        response = self._call(self.client.query_points, name, **kwargs)
        return [
            Hit(id=str(p.id), score=float(p.score), payload=p.payload or {})
            for p in response.points
        ]

    def facet(
        self, name: str, key: str, limit: int = 50, filter: models.Filter | None = None
    ) -> list[FacetCount]:
        self._require(name)
        response = self._call(
            self.client.facet, name, key, facet_filter=filter, limit=limit, exact=True
        )
        return [FacetCount(h.value, int(h.count)) for h in response.hits]

    def browse(self, name: str, request: Browse) -> list[StoredPoint]:
        self._require(name)
        schema = self._call(self.client.get_collection, name).payload_schema or {}
        if request.order_by not in schema:  # collections made before its range index
            kind = index_schema(PAYLOAD_INDEXES[request.order_by], self._storage(name))
            self._call(self.client.create_payload_index, name, request.order_by, kind)
        direction = models.Direction.DESC if request.newest_first else models.Direction.ASC
        kwargs: dict[str, Any] = {
            "query": models.OrderByQuery(
                order_by=models.OrderBy(key=request.order_by, direction=direction)
            ),
            "query_filter": request.filter,
            "limit": request.limit,
            "offset": request.offset,
            "with_payload": True,
        }
        response = self._call(self.client.query_points, name, **kwargs)
        return [StoredPoint(id=str(p.id), payload=p.payload or {}) for p in response.points]

    def optimize(self, name: str) -> IndexStatus:
        """A Qdrant server indexes in the background by itself: report where it stands."""
        self._require(name)
        info = self._call(self.client.get_collection, name)
        return IndexStatus(
            points=info.points_count or 0,
            indexed_vectors=info.indexed_vectors_count or 0,
            segments=info.segments_count or 0,
        )

    def search_batch(
        self,
        name: str,
        requests: Sequence[SearchRequest],
        fields: Sequence[str] | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        self._require(name)
        if not requests:
            return []
        local = self.url.startswith(LOCAL_PREFIX)  # always exact; warns about search params
        params = None
        if not local:
            exact_params = models.SearchParams(exact=True)
            params = exact_params if exact else server_query.search_params(self._storage(name))
        queries = []
        for request in requests:
            plan = request.plan
            if isinstance(plan, RankFusion):
                raise ValueError("search_batch takes Nearest and Recommend plans only")
            if isinstance(plan, Nearest):
                query: Any = as_list(plan.vector)
            else:
                query = models.RecommendQuery(
                    recommend=models.RecommendInput(
                        positive=[as_list(v) for v in plan.positives],
                        negative=[as_list(v) for v in plan.negatives],
                        strategy=models.RecommendStrategy.SUM_SCORES,
                    )
                )
            queries.append(
                models.QueryRequest(
                    query=query,
                    using=plan.using,
                    filter=request.filter,
                    limit=request.limit,
                    offset=request.offset,
                    score_threshold=request.threshold,
                    with_payload=list(fields) if fields is not None else True,
                    params=params,
                )
            )
        responses = self._call(self.client.query_batch_points, name, requests=queries)
        return [
            [Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in r.points]
            for r in responses
        ]

    def update_vectors(self, name: str, vectors: dict[str, dict[str, Any]]) -> None:
        if not vectors:
            return
        points = [
            models.PointVectors(
                id=point_id, vector={k: server_query.vec(v) for k, v in named.items()}
            )
            for point_id, named in vectors.items()
        ]
        self._call(self.client.update_vectors, name, points=points, wait=True)

    def add_vector(self, name: str, vector: str, size: int) -> bool:
        info = self.get_collection(name)
        if info is None:
            raise CollectionNotFound(name)
        if vector in info.vectors:
            return False
        config = models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=size, distance=models.Distance.COSINE)
        )
        self._call(self.client.create_vector_name, name, vector, config, wait=True)
        return True

    def close(self) -> None:
        self.client.close()

    def add_sparse_vector(self, name: str, vector: str) -> bool:
        self._require(name)
        info = self._call(self.client.get_collection, name)
        if vector in (info.config.params.sparse_vectors or {}):
            return False
        config = models.SparseVectorNameConfig(
            sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
        )
        self._call(self.client.create_vector_name, name, vector, config, wait=True)
        if not self.url.startswith(LOCAL_PREFIX):  # the keyword fields' payload indexes
            storage = self._storage(name)
            for field_name, kind in PAYLOAD_INDEXES.items():
                schema = index_schema(kind, storage)
                self._call(self.client.create_payload_index, name, field_name, schema)
        return True
