"""Storage: the backend protocol and its values, BM25, the dense index, filters, and the backends."""
