{{ config(tags=['daily', 'monthly']) }}
{#- Reporting completeness and timeliness per (stream, period_type, period, area), DHIS2 style:
    over the hospital-periods that are due (their deadline passed when the submission mart was
    built), how many were received and how many on time. Daily streams (flu, fever) roll up to
    day / week / month, the monthly stream (outpatient) to month. Counts of hospitals, not of
    patients: nothing here is a small cell. -#}
{%- set counts = ['periods_due', 'periods_received', 'periods_on_time'] %}
with
{%- for name, mart, period in [('daily', 'submission_daily', 'report_date'), ('monthly', 'submission_monthly', 'month')] %}
{{ name }} as (
    select {{ period }}, org_code, province_code, city_code, stream,
        {{ hqms.count_if('due') }} as periods_due,
        {{ hqms.count_if('due and received') }} as periods_received,
        {{ hqms.count_if('due and on_time') }} as periods_on_time
    from {{ ref(mart) }}
    group by all
),
{%- endfor %}

rolled as (
    select * from ({{ hqms.area_period_rollup('daily', 'report_date', counts, keys=['stream']) }})
    union all
    select * from ({{ hqms.area_period_rollup('monthly', 'month', counts, periods=['month'], keys=['stream']) }})
)

select
    * exclude (_built_at),
    {{ hqms.ratio('periods_received', 'periods_due') }} as reporting_rate,
    {{ hqms.ratio('periods_on_time', 'periods_due') }} as on_time_rate,
    _built_at
from rolled
