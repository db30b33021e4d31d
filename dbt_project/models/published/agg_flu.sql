{{ config(tags=['daily']) }}
{#- Flu cases per (period_type day | week | month, period, area): flu_daily (exact, per
    hospital and day) summed by hqms.area_period_rollup, plus the rates analysts read. -#}
{%- set counts = ['visits', 'cases', 'outpatient_cases', 'emergency_cases', 'inpatient_cases',
                  'lab_only_cases', 'lab_confirmed_a', 'lab_confirmed_b', 'antiviral_treated',
                  'antiviral_within_48h', 'severe_cases', 'deaths', 'age_0_4', 'age_5_14',
                  'age_15_24', 'age_25_59', 'age_60_plus', 'age_unknown'] %}
with rolled as (
    {{ hqms.area_period_rollup(ref('flu_daily'), 'report_date', counts) }}
)

select
    * exclude (_built_at),
    {{ hqms.ratio('antiviral_within_48h', 'cases') }} as antiviral_within_48h_rate,
    _built_at
from rolled
