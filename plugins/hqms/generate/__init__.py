"""Synthetic hospitals and their HQMS uploads, written exactly as hospital exporters write them.

``hqms generate --hospitals N --start YYYY-MM-DD --days D --seed S --out DIR [--errors RATE]
[--encoding gbk|utf-8|utf-8-sig] [--streams flu,fever,outpatient] [--scale F] [--lookback 7]``;
in Python ``hqms.generate.run.generate(Options(...))``. Same arguments → byte-identical output.

Output layout under DIR:

``registry/hospitals.csv``
    UTF-8 医院信息汇总表 (川卫办医政便函〔2025〕2号): org_code (22-character 医疗机构代码), org_code9, uscc,
    licence_no, name, province_code, city_code, city_name, medicine_type, category, level, grade,
    data_manager_name, data_manager_phone, data_manager_email. Check digits valid throughout.
``uploads/<stream>/<org_code>/<period>/<name>.zip``
    flu: one zip a day (period ``2025-01-06``, ``flu_20250106.zip``) with ``flu_``, ``hqms_``,
    ``hda_``, ``hdr_``, ``pdr_``, ``lis_`` files named ``<prefix>20250106.csv`` holding the rolling
    look-back (day D re-sends the visits of D-6…D; a later re-send may add lab results, drugs and an
    in-patient's ICU stay or death). fever: one zip a day (``fever_``, ``drug_``, ``lab_``,
    ``examine_``; that day only). outpatient: one zip per month overlapping the run (period
    ``2025-01``, ``mzsy_202501.zip`` holding ``mzsy_202501.csv`` with the visits of that month's
    days inside the run). A dataset without rows is left out of the zip; a day a hospital skips
    has no zip. Zips are DEFLATED with streamed entries and data descriptors (like Java's
    ZipOutputStream); some hospitals put the entries in a folder (``20250106/flu_20250106.csv``);
    some flu/fever exporters append an empty ``serialVersionUID`` column. A zip never exceeds the
    configured limit (20 MB): bigger files are split into parts ``flu_20250106_2.csv`` … carried by
    ``flu_20250106_2.zip`` …, each part with a header row.
    CSV: GBK by default (or UTF-8, UTF-8 with BOM), CRLF, header of the spec's column codes in spec
    order, text and dates double-quoted (``""`` escaping), numbers bare, empty for null.
``upload_plan.csv``
    zip (relative to DIR), stream, org_code, uploader (login name), period, planned_received_at
    (ISO 8601, +08:00): daily uploads mostly the next day, some 2–3 days late, a few days missing;
    monthly ones mostly by the 15th of the next month, some late.
``manifest.jsonl``
    One line per injected defect: zip, file (entry base name), dataset, row (1-based data row of
    that file, header excluded), column, rule (the error the pipeline must report), kind,
    org_code. Every other row conforms to the spec.
``summary.json``
    Parameters, totals and, per zip and per file, the record count and defect count.
"""
