-- depends_on: {{ ref('submission_daily') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['report_date'],
    tags=['daily'],
) }}
{#- submission_daily rolled up to city and province; incremental on the dates just rebuilt there. -#}
{% if is_incremental() %}
{% call hqms.submission_rollup(ref('submission_daily'), 'report_date') %}
    where s.report_date in (
        select report_date from {{ ref('submission_daily') }}
        where _built_at > (select max(_built_at) from {{ this }})
    )
{% endcall %}
{% else %}
{{ hqms.submission_rollup(ref('submission_daily'), 'report_date') }}
{% endif %}
