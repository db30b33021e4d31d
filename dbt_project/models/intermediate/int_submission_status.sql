{#- Expected reports and what arrived: one row per (registry hospital, stream, period) for every
    period between a stream's first and last reported period (so a hospital that sent nothing
    still appears, as not received).

    received: at least one accepted upload (processed / partially accepted) for the period.
    on_time: the first accepted upload arrived before the deadline, local time (Asia/Shanghai):
    daily streams by 24:00 of the next day, monthly by the end of the 15th of the next month.
    uploads / records / conforming_records: every upload of the period that reached ingest
    (rejected ones included: they show how much of what was sent met the standard). -#}
with uploads as (
    select * from {{ ref('int_upload_periods') }}
),

bounds as (
    select cadence, stream, min(period) as first_period, max(period) as last_period
    from uploads
    group by cadence, stream
),

spine as (
    select b.cadence, b.stream, cast(series.period as date) as period
    from bounds as b, {{ hqms.period_series('b.first_period', 'b.last_period', 'day') }}
    where b.cadence = 'day'
    union all
    select b.cadence, b.stream, cast(series.period as date) as period
    from bounds as b, {{ hqms.period_series('b.first_period', 'b.last_period', 'month') }}
    where b.cadence = 'month'
),

per_period as (
    select
        org_code,
        stream,
        period,
        count(*) as uploads,
        {{ dbt.bool_or('is_accepted') }} as received,
        min(case when is_accepted then received_at end) as first_received_at,
        {{ hqms.sum_int('record_count') }} as records,
        {{ hqms.sum_int('conforming_count') }} as conforming_records,
        max(processed_at) as last_processed_at
    from uploads
    group by org_code, stream, period
),

expected as (
    select
        s.cadence,
        s.stream,
        s.period,
        h.org_code,
        h.province_code,
        h.city_code,
        case
            when s.cadence = 'day' then {{ dbt.dateadd('day', 2, 's.period') }}
            else {{ dbt.dateadd('day', var('monthly_due_day'), dbt.dateadd('month', 1, 's.period')) }}
        end as deadline_local
    from spine as s
    cross join {{ ref('stg_hospitals') }} as h
)

select
    e.cadence,
    e.stream,
    e.period,
    e.org_code,
    e.province_code,
    e.city_code,
    coalesce(p.received, false) as received,
    p.first_received_at,
    {{ hqms.local_timestamp('p.first_received_at') }} as first_received_local,
    cast(e.deadline_local as {{ dbt.type_timestamp() }}) as deadline_local,
    coalesce({{ hqms.local_timestamp('p.first_received_at') }} < e.deadline_local, false) as on_time,
    coalesce(p.uploads, 0) as uploads,
    coalesce(p.records, 0) as records,
    coalesce(p.conforming_records, 0) as conforming_records,
    cast(p.conforming_records as {{ hqms.type_double() }}) / nullif(p.records, 0) as conformance_rate,
    p.last_processed_at
from expected as e
left join per_period as p
    on p.org_code = e.org_code and p.stream = e.stream and p.period = e.period
