"""The Milvus backend (Milvus Lite, a server or a cluster)."""
