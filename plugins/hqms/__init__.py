"""HQMS surveillance data pipeline: intake, validation, de-identification, encryption, marts."""

__version__ = "0.1.0"
