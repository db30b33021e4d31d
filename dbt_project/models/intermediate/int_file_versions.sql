{#- One row per (hospital, dataset, file, upload holding a version of that file): the upload
    record's view of file versions (docs/marts.md, "Re-sent monthly page files").

    A file version belongs to the upload that sent it (ops.upload_files, written by the merge in
    the same transaction as the rows), not to the rows that survive it: the merge keeps one row
    per natural key, so a later upload re-sending the same pages under another name takes those
    rows over and leaves the earlier version of the file holding nothing. Inferred from the rows,
    the upload before it would then become "the newest holder" again, and the pages its
    successor withdrew would count again.

    A file is told apart across uploads by hqms.file_identity (macros/file_names.sql); names
    without an identity are left out. Only files with a conforming row hold a version: a file
    whose every row was rejected (or a header-only file) replaces nothing. is_newest marks the
    newest holder, ordered as the precision switch orders uploads: received_at, then processed_at
    (the merge's transaction time, which is every row's _loaded_at), then upload_id. -#}
with held as (
    select distinct
        u.org_code,
        f.dataset,
        f.file_identity,
        f.upload_id,
        u.received_at,
        u.processed_at
    from (
        select upload_id, dataset, {{ hqms.file_identity('file_name') }} as file_identity
        from {{ ref('stg_upload_files') }}
        where conforming_count > 0
    ) as f
    inner join {{ ref('stg_uploads') }} as u on u.upload_id = f.upload_id
    where f.file_identity is not null
)

select
    org_code,
    dataset,
    file_identity,
    upload_id,
    received_at,
    processed_at,
    row_number() over (
        partition by org_code, dataset, file_identity
        order by received_at desc nulls last, processed_at desc nulls last, upload_id desc
    ) = 1 as is_newest
from held
