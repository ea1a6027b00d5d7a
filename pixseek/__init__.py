"""pixseek core: configuration, embedding models and the vector store shared by every stage."""

__version__ = "0.1.0"
