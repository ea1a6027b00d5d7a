"""Ingest stage: walk an image archive, embed images, upsert them into a Qdrant collection."""
