"""Ingest: finding and loading files, chunking, planning a sync."""
