-- depends_on: {{ ref('int_upload_periods') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['report_date'],
    on_schema_change='fail',
    tags=['daily'],
) }}
{#- Daily streams (flu, fever): one row per (registry hospital, report_date, stream).
    Incremental: report dates of uploads processed since the last build (minus the lookback),
    plus any date after the newest one already built. -#}
with status as (
    select * from {{ ref('int_submission_status') }} where cadence = 'day'
)
{% if is_incremental() %}
, touched as (
    select period from {{ ref('int_upload_periods') }}
    where cadence = 'day' and processed_at > {{ hqms.rebuild_since() }}
    union
    select period from status where period > (select max(report_date) from {{ this }})
)
{% endif %}

select
    period as report_date,
    org_code,
    province_code,
    city_code,
    stream,
    received,
    first_received_at,
    first_received_local,
    deadline_local,
    on_time,
    uploads,
    records,
    conforming_records,
    conformance_rate,
    {{ hqms.build_timestamp() }} as _built_at
from status
{% if is_incremental() %}
where period in (select period from touched)
{% endif %}
