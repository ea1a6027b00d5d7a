"""`python -m pixseek.store.build_index SHARD_DIR`: build the HNSW index of a Qdrant Edge shard.

Run by the server's background indexer (api/indexer.py) in a child process on a copy of a live
shard: Qdrant Edge's optimizer holds the Python GIL while it works, so in the server's own
process it would stall every request for minutes. Prints the IndexStatus as one JSON line.
"""

from __future__ import annotations

import json
import sys

import qdrant_edge as qe


def main() -> None:
    shard = qe.EdgeShard.load(sys.argv[1])
    changed = bool(shard.optimize())
    shard.flush()
    info = shard.info()
    shard.close()
    print(
        json.dumps(
            {
                "points": info.points_count,
                "indexed_vectors": info.indexed_vectors_count,
                "segments": info.segments_count,
                "changed": changed,
            }
        )
    )


if __name__ == "__main__":
    main()
