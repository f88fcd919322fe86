"""The local backend: SQLite records plus BM25 and faiss segment files in one directory."""
