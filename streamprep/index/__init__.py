"""The index: label data, every image's byte range in the downloads, every bounding box; nothing decoded."""
