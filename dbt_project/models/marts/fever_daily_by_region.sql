-- depends_on: {{ ref('fever_daily') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['visit_date'],
    tags=['daily'],
) }}
{#- fever_daily summed to province and city; incremental on the dates just rebuilt there. -#}
{% if is_incremental() %}
{% call hqms.sum_by_region(ref('fever_daily'), 'visit_date') %}
    where s.visit_date in (
        select visit_date from {{ ref('fever_daily') }}
        where _built_at > (select max(_built_at) from {{ this }})
    )
{% endcall %}
{% else %}
{{ hqms.sum_by_region(ref('fever_daily'), 'visit_date') }}
{% endif %}
