-- depends_on: {{ ref('stg_flu') }}, {{ ref('stg_lis') }}, {{ ref('stg_pdr') }}
{{ config(materialized='incremental', unique_key=['report_date'], tags=['daily']) }}
{#- One row per (report_date, org_code): flu visits and cases of the day at one hospital.
    Incremental: a run recomputes only the report dates touched by flu_, lis_ or pdr_ rows loaded
    since the previous build (minus the lookback), whole dates at a time (replace_periods; a touched
    date left without rows gets a tombstone: macros/incremental.sql). -#}
with
{% if is_incremental() %}
touched as (
    select visit_date as report_date from {{ ref('stg_flu') }} where _loaded_at > {{ hqms.rebuild_since() }}
    union
    select visit_date from {{ ref('stg_lis') }} where _loaded_at > {{ hqms.rebuild_since() }}
    union
    select visit_date from {{ ref('stg_pdr') }} where _loaded_at > {{ hqms.rebuild_since() }}
),
{% endif %}

visits as (
    select * from {{ ref('int_flu_visits') }}
    {% if is_incremental() %}
    where visit_date in (select report_date from touched)
    {% endif %}
),

daily as (
    select
        v.visit_date as report_date,
        v.org_code,
        h.province_code,
        h.city_code,
        count(*) as visits,
        {{ hqms.count_if('v.is_case') }} as cases,
        {{ hqms.count_if("v.is_case and v.visit_type = '01'") }} as outpatient_cases,
        {{ hqms.count_if("v.is_case and v.visit_type = '02'") }} as emergency_cases,
        {{ hqms.count_if("v.is_case and v.visit_type = '03'") }} as inpatient_cases,
        {{ hqms.count_if('v.is_case and not v.has_flu_dx') }} as lab_only_cases,
        {{ hqms.count_if('v.lab_confirmed_a') }} as lab_confirmed_a,
        {{ hqms.count_if('v.lab_confirmed_b') }} as lab_confirmed_b,
        {{ hqms.count_if('v.is_case and v.antiviral_treated') }} as antiviral_treated,
        {{ hqms.count_if('v.is_case and v.antiviral_within_48h') }} as antiviral_within_48h,
        {{ hqms.count_if('v.is_case and v.is_severe') }} as severe_cases,
        {{ hqms.count_if('v.is_case and v.died') }} as deaths,
        {{ hqms.age_band_counts('v.age_band', 'v.is_case') }},
        {{ hqms.build_timestamp() }} as _built_at
    from visits as v
    left join {{ ref('stg_hospitals') }} as h on h.org_code = v.org_code
    group by v.visit_date, v.org_code, h.province_code, h.city_code
)

select * from daily
{% if is_incremental() %}
{{ hqms.tombstones('daily', 'report_date', 'select report_date from touched') }}
{% endif %}
