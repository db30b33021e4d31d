-- depends_on: {{ ref('flu_daily') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['report_date'],
    tags=['daily'],
) }}
{#- flu_daily summed to province and city; incremental on the dates just rebuilt there. -#}
{% if is_incremental() %}
{% call hqms.sum_by_region(ref('flu_daily'), 'report_date') %}
    where s.report_date in (
        select report_date from {{ ref('flu_daily') }}
        where _built_at > (select max(_built_at) from {{ this }})
    )
{% endcall %}
{% else %}
{{ hqms.sum_by_region(ref('flu_daily'), 'report_date') }}
{% endif %}
