"""Text: BM25 analysis, token counting and the embedding model."""
