{{ config(tags=['daily']) }}
{#- Fever-clinic load and influenza testing per (period_type, period, area): fever_daily (exact)
    plus the influenza-diagnosed visits of pub_fever_hospital_day, summed by
    hqms.area_period_rollup, with positivity, the flu-like share and the load per hospital. -#}
{%- set counts = ['visits', 'first_visits', 'referrals', 'observation_stays', 'flu_tested',
                  'flu_positive', 'flu_a_positive', 'flu_b_positive', 'flu_a_only', 'flu_b_only',
                  'flu_ab_both', 'flu_untyped_positive', 'flu_like_visits',
                  'age_0_4', 'age_5_14', 'age_15_24', 'age_25_59', 'age_60_plus', 'age_unknown',
                  'male', 'female', 'sex_unknown'] %}
with rolled as (
    {{ hqms.area_period_rollup(ref('pub_fever_hospital_day'), 'report_date', counts) }}
)

select
    * exclude (_built_at),
    {{ hqms.ratio('flu_positive', 'flu_tested') }} as positivity,
    {{ hqms.ratio('flu_a_positive', 'flu_tested') }} as positivity_a,
    {{ hqms.ratio('flu_b_positive', 'flu_tested') }} as positivity_b,
    {{ hqms.ratio('flu_like_visits', 'visits') }} as flu_like_share,
    {{ hqms.ratio('visits', 'hospitals') }} as visits_per_hospital,
    _built_at
from rolled
