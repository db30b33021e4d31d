-- depends_on: {{ ref('icd10_chapters') }}
{{ config(tags=['monthly']) }}
{#- Outpatient volume, cost and diagnosis chapters per (period_type, period, area):
    pub_outpatient_hospital_day summed by hqms.area_period_rollup. -#}
{%- set chapters = hqms.icd10_chapters() %}
{%- set counts = ['visits', 'emergency_visits', 'revisits', 'infusion_visits', 'chronic_special_visits',
                  'triage_level_1', 'triage_level_2', 'triage_level_3', 'triage_level_4',
                  'antibiotic_cost_pages'] %}
{%- for chapter in chapters %}{% do counts.append('dx_' ~ (chapter | lower)) %}{% endfor %}
{%- do counts.append('dx_unknown') %}
with rolled as (
    {{ hqms.area_period_rollup(ref('pub_outpatient_hospital_day'), 'report_date', counts,
                               sums=['total_cost', 'self_pay_cost', 'antibiotic_cost']) }}
)

select
    * exclude (_built_at),
    {{ hqms.ratio('infusion_visits', 'visits') }} as infusion_rate,
    cast(total_cost / nullif(visits, 0) as decimal(18, 2)) as avg_cost_per_visit,
    _built_at
from rolled
