{#- One row per (ingested upload, reporting period it answers). An upload answers every period its
    files name: a zip holding mzsy_202609.csv and mzsy_202610.csv answers September and October,
    a daily zip holding flu_20250106.csv and flu_20250106_2.csv the one day (hqms.file_name_date
    reads 20250106, 2025-01-06, 202501, 2025-01, 2025_01 ...).

    A file whose name has no date answers the period of its LAST conforming row
    (ops.upload_files.period_end): daily, the extract day; monthly, the latest month (284 October
    pages with 5 late September ones answer October). Not "the month most rows fall in": the
    ingest keeps only each file's first and last event date, and dw.* cannot count them
    afterwards (a record re-sent later carries the newer upload's lineage). A file with neither
    answers the date in the zip's name, else its upload's latest period; an upload with no period
    at all, the local day it arrived (daily) or the month before (monthly: reports are for last
    month). The zip's name comes after the rows: "a zip of any name" (docs/architecture.md), and
    one named by the upload month (mzsy_202611.zip holding October) must not answer November.

    records / conforming_records: those of the files answering the period (an upload without file
    rows: its own counts). Uploads of future periods stay here; int_submission_status expects no
    period after the current one. -#}
with uploads as (
    select
        *,
        {{ hqms.reporting_cadence('stream') }} as cadence,
        {{ hqms.file_name_date('file_name') }} as zip_date
    from {{ ref('stg_uploads') }}
),

files as (
    select
        f.upload_id,
        f.record_count,
        f.conforming_count,
        {{ hqms.reporting_period('u.cadence', 'coalesce(f.file_date, f.period_end, u.zip_date)') }} as period
    from {{ ref('stg_upload_files') }} as f
    inner join uploads as u on u.upload_id = f.upload_id
),

fallback as (
    -- the period of a file that got none above, and of an upload without file rows
    select
        u.upload_id,
        coalesce(
            max(f.period),
            {{ hqms.reporting_period('u.cadence', 'u.zip_date') }},
            case when u.cadence = 'month'
                then cast({{ dbt.date_trunc('month', dbt.dateadd('month', -1, 'cast(u.received_local as date)')) }} as date)
                else cast(u.received_local as date)
            end
        ) as period
    from uploads as u
    left join files as f on f.upload_id = u.upload_id
    group by u.upload_id, u.cadence, u.zip_date, u.received_local
),

answers as (
    select f.upload_id, coalesce(f.period, b.period) as period, f.record_count, f.conforming_count
    from files as f
    inner join fallback as b on b.upload_id = f.upload_id
    union all
    select u.upload_id, b.period, u.record_count, u.conforming_count
    from uploads as u
    inner join fallback as b on b.upload_id = u.upload_id
    where not exists (select 1 from files as f where f.upload_id = u.upload_id)
)

select
    u.upload_id,
    u.stream,
    u.org_code,
    u.cadence,
    a.period,
    u.received_at,
    u.received_local,
    u.is_accepted,
    {{ hqms.sum_int('a.record_count') }} as record_count,
    {{ hqms.sum_int('a.conforming_count') }} as conforming_count,
    u.processed_at
from uploads as u
inner join answers as a on a.upload_id = u.upload_id
group by u.upload_id, u.stream, u.org_code, u.cadence, a.period, u.received_at, u.received_local,
         u.is_accepted, u.processed_at
