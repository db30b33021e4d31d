"""Ingest: fetch and vault landed uploads, then stage, validate, de-identify and merge them in rounds
(:mod:`hqms.ingest.process`)."""
