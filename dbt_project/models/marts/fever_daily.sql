-- depends_on: {{ ref('stg_fever') }}, {{ ref('stg_lab') }}
{{ config(materialized='incremental', unique_key=['report_date'], tags=['daily']) }}
{#- One row per (report_date, org_code): what a hospital's fever clinic saw that day.
    Incremental like flu_daily: dates touched by fever_ or lab_ rows loaded since the last build,
    and the dates re-sent visits moved away from (P7506 is not part of their key). A touched date
    left with no visit at all gets a tombstone, so replace_periods clears it (macros/incremental.sql). -#}
with
{% if is_incremental() %}
touched as (
    select visit_date as report_date from {{ ref('stg_fever') }} where _loaded_at > {{ hqms.rebuild_since() }}
    union
    select visit_date from {{ ref('stg_lab') }} where _loaded_at > {{ hqms.rebuild_since() }}
    union
    select period_date from {{ source('ops', 'moved_periods') }}
    where dataset in ('fever', 'lab') and moved_at > {{ hqms.rebuild_since() }}
),
{% endif %}

visits as (
    select * from {{ ref('int_fever_visits') }}
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
        {{ hqms.count_if('v.is_first_visit') }} as first_visits,
        {{ hqms.count_if('v.is_referral') }} as referrals,
        {{ hqms.count_if('v.is_observation_stay') }} as observation_stays,
        {{ hqms.count_if('v.flu_tested') }} as flu_tested,
        {{ hqms.count_if('v.flu_positive') }} as flu_positive,
        {{ hqms.count_if('v.flu_a_positive') }} as flu_a_positive,
        {{ hqms.count_if('v.flu_b_positive') }} as flu_b_positive,
        {{ hqms.count_if('v.flu_a_only') }} as flu_a_only,
        {{ hqms.count_if('v.flu_b_only') }} as flu_b_only,
        {{ hqms.count_if('v.flu_ab_both') }} as flu_ab_both,
        {{ hqms.count_if('v.flu_untyped_positive') }} as flu_untyped_positive,
        {{ hqms.count_if('v.flu_undetermined') }} as flu_undetermined,
        {{ hqms.count_if('v.flu_pending') }} as flu_pending,
        {{ hqms.age_band_counts('v.age_band') }},
        {{ hqms.count_if("v.sex = '1'") }} as male,
        {{ hqms.count_if("v.sex = '2'") }} as female,
        {{ hqms.count_if("v.sex is null or v.sex not in ('1', '2')") }} as sex_unknown,
        {{ hqms.build_timestamp() }} as _built_at
    from visits as v
    left join {{ ref('stg_hospitals') }} as h on h.org_code = v.org_code
    group by v.visit_date, v.org_code, h.province_code, h.city_code
)

select * from daily
{% if is_incremental() %}
{{ hqms.tombstones('daily', 'report_date', 'select report_date from touched') }}
{% endif %}
