{{ config(tags=['monthly']) }}
{#- submission_monthly rolled up to city and province. -#}
{{ hqms.submission_rollup(ref('submission_monthly'), 'month') }}
