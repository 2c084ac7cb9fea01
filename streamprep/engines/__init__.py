"""Engines drive one shared pipeline: local threads in this process, or an Apache Beam pipeline."""
