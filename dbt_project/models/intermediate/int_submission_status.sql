{#- Expected reports and what arrived: one row per (registry hospital, stream, period) for every
    period between a stream's first and last reported period (so a hospital that sent nothing
    still appears, as not received), never after the current period: an upload for a future
    month (or a mistyped year, mzsy_206210.csv) stays in int_upload_periods but adds no period,
    for anyone. The range is not bounded backwards: a late package for an earlier period extends it
    (the back-fill of 川卫办医政便函〔2025〕2号 does exactly that).

    received: at least one accepted upload (processed / partially accepted) for the period.
    deadline_local (Asia/Shanghai; on time = strictly before): daily streams 24:00 of the next
    day, monthly the end of the 15th of the next month, unless seed reporting_deadline_overrides
    sets the period's due date (川卫办医政便函〔2025〕2号: January-March 2025 by 30 April 2025).
    due: the deadline has passed at the as-of moment (hqms.reporting_as_of: the run's start).
    on_time: true once the first accepted upload arrived before the deadline; false when the
    period is due and it did not; NULL while not yet due and not yet received (undecided).
    uploads / records / conforming_records: every upload of the period that reached ingest
    (rejected ones included: they show how much of what was sent met the standard). -#}
with uploads as (
    select * from {{ ref('int_upload_periods') }}
),

as_of as (
    select
        {{ hqms.reporting_as_of() }} as as_of_local,
        cast({{ hqms.reporting_as_of() }} as date) as as_of_date
),

bounds as (
    select u.cadence, u.stream, min(u.period) as first_period, max(u.period) as last_period
    from uploads as u
    cross join as_of as n
    where u.period <= {{ hqms.reporting_period('u.cadence', 'n.as_of_date') }}
    group by u.cadence, u.stream
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

deadlines as (
    select
        s.cadence,
        s.stream,
        s.period,
        coalesce(
            -- the end of the override's due date; overlapping overrides: the latest
            max({{ dbt.dateadd('day', 1, 'o.due_date') }}),
            case
                when s.cadence = 'day' then {{ dbt.dateadd('day', 2, 's.period') }}
                else {{ dbt.dateadd('day', var('monthly_due_day'), dbt.dateadd('month', 1, 's.period')) }}
            end
        ) as deadline_local
    from spine as s
    left join {{ ref('reporting_deadline_overrides') }} as o
        on o.stream = s.stream and s.period between o.period_from and o.period_to
    group by s.cadence, s.stream, s.period
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
        d.cadence,
        d.stream,
        d.period,
        h.org_code,
        h.province_code,
        h.city_code,
        cast(d.deadline_local as {{ dbt.type_timestamp() }}) as deadline_local,
        d.deadline_local <= n.as_of_local as due
    from deadlines as d
    cross join as_of as n
    cross join {{ ref('stg_hospitals') }} as h
),

status as (
    select
        e.*,
        coalesce(p.received, false) as received,
        p.first_received_at,
        {{ hqms.local_timestamp('p.first_received_at') }} as first_received_local,
        p.uploads,
        p.records,
        p.conforming_records,
        p.last_processed_at
    from expected as e
    left join per_period as p
        on p.org_code = e.org_code and p.stream = e.stream and p.period = e.period
)

select
    cadence,
    stream,
    period,
    org_code,
    province_code,
    city_code,
    received,
    first_received_at,
    first_received_local,
    deadline_local,
    due,
    case
        when first_received_local < deadline_local then true
        when due then false
    end as on_time,
    coalesce(uploads, 0) as uploads,
    coalesce(records, 0) as records,
    coalesce(conforming_records, 0) as conforming_records,
    cast(conforming_records as {{ hqms.type_double() }}) / nullif(records, 0) as conformance_rate,
    last_processed_at
from status
