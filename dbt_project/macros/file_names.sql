{#- Which file a row came from, across uploads (docs/marts.md, "De-duplication").

    Hospitals re-send a file under the name they first gave it, or under the name their browser or
    file manager gives a copy or a second download: mzsy_202610(1).csv, "mzsy_202610 - 副本.csv",
    "mzsy_202610 copy 2.csv", sometimes in other letter case. Split parts (mzsy_202610_1.csv,
    mzsy_202610_2.csv) are different files. -#}

{#- file_name_pattern('copy_marks') — the marks a copy or a second download adds before the extension: (1),
    " (1)", " - 副本", " - 副本 (2)", " copy 2" — is generated from hqms.spec.filenames
    (macros/file_name_patterns.sql), like the patterns of file_name_date (macros/time.sql). -#}

{% macro file_identity(file_name) -%}
    {#- The file a stored name (_source_file: base name, identifiers masked at intake) stands for:
        the name without copy marks and extension, in lower case (mzsy_202610(1).csv and
        MZSY_202610.CSV → mzsy_202610). NULL — no identity across uploads — when
        * the name gives no period (hqms.file_name_date: e.g. mzsy_export.csv): an exporter writing the
          same name every month would otherwise make each month's file replace the last one's;
        * the name holds a masked ID or mobile number (*): two different numbers mask alike. -#}
    case
        when {{ hqms.file_name_date(file_name) }} is not null and {{ file_name }} not like '%*%'
            then lower(regexp_replace({{ file_name }}, '{{ hqms.file_name_pattern("copy_marks") }}\.[A-Za-z]+$', ''))
    end
{%- endmacro %}
