{{ config(tags=['monthly']) }}
{#- Monthly stream (outpatient info page): one row per (registry hospital, month, stream); due by
    the 15th of the following month (other due dates, e.g. 川卫办医政便函〔2025〕2号's catch-up: seed
    reporting_deadline_overrides). Small (hospitals x months): rebuilt whole each time, so a month
    turns due on the first build after its deadline. -#}
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
    due,
    on_time,
    uploads,
    records,
    conforming_records,
    conformance_rate,
    {{ hqms.build_timestamp() }} as _built_at
from {{ ref('int_submission_status') }}
where cadence = 'month'
