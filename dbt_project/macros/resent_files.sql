{#- A file re-sent under the same name replaces its earlier version as a whole (docs/marts.md,
    "De-duplication"; used for the monthly outpatient page, whose file is the hospital's complete
    statement of its month).

    The warehouse merge replaces a record only by its natural key: a page re-sent with a
    corrected key (JZSJ, JZKH) or left out of the corrected file keeps its old version, and the
    month counts it twice or wrongly. The warehouse keeps every version; these macros make the
    marts read only the newest version of each file. Files are told apart by hqms.file_identity
    (macros/file_names.sql); rows whose name has no identity are never dropped by name. -#}

{% macro drop_replaced_files(relation) -%}
    {#- Rows of relation (one row per record, i.e. after latest_version; needs org_code,
        source_file, upload_id, received_at, _loaded_at) that came from the NEWEST upload among
        those of the same hospital holding a version of the same file. Uploads are ordered like
        the precision switch orders them (received_at, then _loaded_at; NULL oldest), then by
        upload_id for a full tie. A record whose key the newer version re-sent already is that
        version (latest_version); this drops the rest of the older version: pages whose key
        changed or that were left out. Helper columns start with _file_. -#}
    select * from (
        select
            named.*,
            dense_rank() over (
                partition by org_code, _file_identity
                order by received_at desc nulls last, _loaded_at desc nulls last, upload_id desc nulls last
            ) as _file_version
        from (
            select r.*, f._file_identity
            from {{ relation }} as r
            left join ({{ hqms.file_identities(relation) }}) as f on f.source_file = r.source_file
        ) as named
    ) as versioned
    where _file_identity is null or _file_version = 1
{%- endmacro %}

{% macro periods_of_files_loaded_since(relation, period_column, since) -%}
    {#- The periods an incremental mart over relation must rebuild: those of rows loaded after
        `since`, and every period of the files (hospital + file identity) those rows belong to.
        The rows a re-sent file drops (drop_replaced_files) were loaded long ago and may lie in
        another period than anything re-sent (a late September visit inside mzsy_202610.csv);
        that period must be rebuilt too, or be cleared by a tombstone when nothing is left. -#}
    select {{ period_column }} from {{ relation }} where _loaded_at > {{ since }}
    union
    select earlier.period
    from (select distinct org_code, source_file, {{ period_column }} as period from {{ relation }}) as earlier
    join ({{ hqms.file_identities(relation) }}) as earlier_file on earlier_file.source_file = earlier.source_file
    join (
        select distinct r.org_code, f._file_identity
        from {{ relation }} as r
        join ({{ hqms.file_identities(relation) }}) as f on f.source_file = r.source_file
        where r._loaded_at > {{ since }}
    ) as resent
        on resent.org_code = earlier.org_code and resent._file_identity = earlier_file._file_identity
{%- endmacro %}

{% macro file_identities(relation) -%}
    {#- (source_file, _file_identity) for each distinct name of relation: the regular expressions
        run once per name, not once per row (measured: half the cost of drop_replaced_files on
        4 M rows). Names without an identity are left out (an inner join drops them). -#}
    select source_file, _file_identity from (
        select source_file, {{ hqms.file_identity('source_file') }} as _file_identity
        from (select distinct source_file from {{ relation }}) as names
    ) as named
    where _file_identity is not null
{%- endmacro %}
