{#- One row per ingested upload with the reporting period it answers.

    Daily streams: the day in the package's file names (flu_20250106.csv: the extract of that day,
    holding visits of the 7 days up to it); else the last event date in its files; else the local
    day it was received. Outpatient: the month in the file name (mzsy_202501.csv); else the month
    of its first event date; else the month before it was received (reports are for last month). -#}
with files as (
    select
        upload_id,
        min(file_date) as file_date,
        min(period_start) as period_start,
        max(period_end) as period_end
    from {{ ref('stg_upload_files') }}
    group by upload_id
),

dated as (
    select
        u.*,
        coalesce(f.file_date, {{ hqms.file_name_date('u.file_name') }}) as named_date,
        f.period_start,
        f.period_end
    from {{ ref('stg_uploads') }} as u
    left join files as f on f.upload_id = u.upload_id
)

select
    upload_id,
    stream,
    org_code,
    case when stream in ({{ "'" ~ var('monthly_streams') | join("', '") ~ "'" }}) then 'month' else 'day' end as cadence,
    case
        when stream in ({{ "'" ~ var('monthly_streams') | join("', '") ~ "'" }}) then cast({{ dbt.date_trunc('month',
            "coalesce(named_date, period_start, " ~ dbt.dateadd('month', -1, 'cast(received_local as date)') ~ ")") }} as date)
        else coalesce(named_date, period_end, cast(received_local as date))
    end as period,
    received_at,
    received_local,
    is_accepted,
    record_count,
    conforming_count,
    processed_at
from dated
