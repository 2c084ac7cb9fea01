"""The output formats, one package each (entry, writer, checker, reader), and what they share: verify, inspect."""
