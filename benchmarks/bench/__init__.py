"""Pieces the benchmark scripts share: generated downloads, process statistics, timing, reports, the HTTP server."""
