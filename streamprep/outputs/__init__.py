"""Everything that writes or checks files: output formats, the manifest, the classic folder layout, verify."""
