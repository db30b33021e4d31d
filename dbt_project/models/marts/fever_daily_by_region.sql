-- depends_on: {{ ref('fever_daily') }}
{{ config(materialized='incremental', unique_key=['report_date'], tags=['daily']) }}
{#- fever_daily summed to province and city. Incremental on the dates just rebuilt there, and on
    the dates it no longer has (emptied: cleared here by a tombstone; macros/incremental.sql). -#}
{% if is_incremental() %}
with touched as (
    {{ hqms.rollup_touched(ref('fever_daily'), 'report_date') }}
),

rolled_up as (
    {% call hqms.sum_by_region(ref('fever_daily'), 'report_date') %}
        where s.report_date in (select report_date from touched)
    {% endcall %}
)

select * from rolled_up
{{ hqms.tombstones('rolled_up', 'report_date', 'select report_date from touched') }}
{% else %}
{{ hqms.sum_by_region(ref('fever_daily'), 'report_date') }}
{% endif %}
