"""Surveillance marts: the dbt project in ``dbt_project/``, how it is run, and how it is published.

* :mod:`hqms.marts.dbt` runs dbt in a subprocess (so DuckDB's single-writer lock is released when
  it exits) with its target and log folders under ``HQMS_HOME``;
* :mod:`hqms.marts.sources` writes ``dbt_project/models/sources.yml`` from the spec;
* :mod:`hqms.marts.publish` exports the marts with small-cell suppression (Parquet in the marts
  bucket, read-only DuckDB snapshot) so analysts never open the live warehouse;
* :mod:`hqms.marts.summary` prints a short picture of the published marts.
"""
