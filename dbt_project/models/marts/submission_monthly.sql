{{ config(tags=['monthly']) }}
{#- Monthly stream (outpatient info page): one row per (registry hospital, month, stream); due by
    the 15th of the following month. Small (hospitals x months): rebuilt whole each time. -#}
select
    period as month,
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
from {{ ref('int_submission_status') }}
where cadence = 'month'
