{{ config(tags=['daily', 'monthly']) }}
{#- The hospital dimension for analysts: registry attributes and region names (no contacts). -#}
select
    org_code,
    org_name,
    province_code,
    province_name,
    city_code,
    city_name,
    medicine_type,
    category,
    level,
    grade,
    {{ hqms.build_timestamp() }} as _built_at
from {{ ref('stg_hospitals') }}
