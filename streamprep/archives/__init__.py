"""Reading the three downloads in place: fsspec sources, tar headers, nested and gzipped walks, retries, MD5s."""
