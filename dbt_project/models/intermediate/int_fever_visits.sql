{#- One row per fever-clinic visit (fever_, de-duplicated by natural key = P7000 within the org)
    with its influenza testing from linked lab_ rows (same org and P7000).

    A lab_ row is an influenza test when one of its item names contains a pattern of the
    fever_flu_tests seed; it is positive when its qualitative result reads positive (阳性, +). -#}
with visits as (
    {{ hqms.latest_version(ref('stg_fever')) }}
),

flu_tests as (
    select
        l.org_code,
        l.visit_serial_pid,
        max(case when t.flu_type = 'A' then 1 else 0 end) = 1 as names_flu_a,
        max(case when t.flu_type = 'B' then 1 else 0 end) = 1 as names_flu_b,
        {{ hqms.is_positive_text('l.result_text') }} as is_positive,
        l.record_key
    from {{ ref('stg_lab') }} as l
    inner join {{ ref('fever_flu_tests') }} as t
        on {{ hqms.contains_ci('l.test_name', 't.pattern') }}
    group by l.org_code, l.visit_serial_pid, l.record_key, l.result_text
),

test_flags as (
    select
        org_code,
        visit_serial_pid,
        true as flu_tested,
        {{ dbt.bool_or('is_positive') }} as flu_positive,
        {{ dbt.bool_or('is_positive and names_flu_a') }} as flu_a_positive,
        {{ dbt.bool_or('is_positive and names_flu_b') }} as flu_b_positive
    from flu_tests
    group by org_code, visit_serial_pid
)

select
    v.org_code,
    v.record_key,
    v.visit_time,
    v.visit_date,
    v.sex,
    v.age_band,
    v.is_first_visit,
    v.is_referral,
    v.is_observation_stay,
    coalesce(t.flu_tested, false) as flu_tested,
    coalesce(t.flu_positive, false) as flu_positive,
    coalesce(t.flu_a_positive, false) as flu_a_positive,
    coalesce(t.flu_b_positive, false) as flu_b_positive,
    v.total_cost,
    v.received_at,
    v._loaded_at
from visits as v
left join test_flags as t
    on t.org_code = v.org_code and t.visit_serial_pid = v.visit_serial_pid
