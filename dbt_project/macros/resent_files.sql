{#- A file re-sent under the same name replaces its earlier version as a whole (docs/marts.md,
    "Re-sent monthly page files"; used for the monthly outpatient page, whose file is the
    hospital's complete statement of its month).

    The warehouse merge replaces a record only by its natural key: a page re-sent with a
    corrected key (JZSJ, JZKH) or left out of the corrected file keeps its old row, and the month
    would count it twice or wrongly. The merge keeps ONE row per key (a re-sent key's row becomes
    the newer upload's), so the warehouse does not keep every version: which upload holds the
    newest version of a file is read from the upload record (int_file_versions, over
    ops.upload_files), never inferred from the rows that survive. Files are told apart by
    hqms.file_identity (macros/file_names.sql); rows whose name has no identity are never dropped
    by name. -#}

{% macro drop_replaced_files(relation, file_versions, dataset) -%}
    {#- Rows of relation (one row per record, i.e. after latest_version; needs org_code,
        source_file, upload_id) unless an upload of the same hospital other than the row's is the
        newest holding a version of the row's file (file_versions.is_newest for `dataset`). A
        record the newer version re-sent already is that version (latest_version); this drops the
        rest of the older versions: pages whose key changed or that were left out, also once a
        still later upload has taken over every row of the newer version under another name. A
        row whose file has no identity, or no holder in the upload record (rows written without
        one), is kept. -#}
    select r.*
    from {{ relation }} as r
    left join ({{ hqms.file_identities(relation) }}) as f on f.source_file = r.source_file
    left join (
        select org_code, file_identity, upload_id
        from {{ file_versions }}
        where dataset = '{{ dataset }}' and is_newest
    ) as newest
        on newest.org_code = r.org_code and newest.file_identity = f._file_identity
    where newest.upload_id is null or newest.upload_id = r.upload_id
{%- endmacro %}

{% macro periods_of_files_loaded_since(relation, period_column, since, file_versions, dataset) -%}
    {#- The periods an incremental mart over relation must rebuild: those of rows loaded after
        `since`, and every period of the files (hospital + file identity) that an upload processed
        after `since` sent a version of (file_versions, from the upload record: a re-send whose
        rows all went to a still later upload changes which pages count all the same). The rows a
        re-sent file drops (drop_replaced_files) were loaded long ago and may lie in another period
        than anything re-sent (a late September visit inside mzsy_202610.csv); that period must be
        rebuilt too, or be cleared by a tombstone when nothing is left. -#}
    select {{ period_column }} from {{ relation }} where _loaded_at > {{ since }}
    union
    select earlier.period
    from (select distinct org_code, source_file, {{ period_column }} as period from {{ relation }}) as earlier
    join ({{ hqms.file_identities(relation) }}) as earlier_file on earlier_file.source_file = earlier.source_file
    join (
        select distinct org_code, file_identity
        from {{ file_versions }}
        where dataset = '{{ dataset }}' and processed_at > {{ since }}
    ) as resent
        on resent.org_code = earlier.org_code and resent.file_identity = earlier_file._file_identity
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
