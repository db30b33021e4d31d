"""Ingest: stage, validate, de-identify, merge one landed upload at a time."""
