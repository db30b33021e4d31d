{#- The hospital registry (deployment data in ref.hospitals), with region names from the seed.
    province_code is the 2-digit GB/T 2260 prefix, city_code the 6-digit city code. -#}
select
    h.org_code,
    h.name as org_name,
    h.province_code,
    p.name_zh as province_name,
    h.city_code,
    coalesce(c.name_zh, h.city_name) as city_name,
    h.medicine_type,
    h.category,
    h.level,
    h.grade
from {{ source('ref', 'hospitals') }} as h
{{ hqms.region_name_join('province', 'h.province_code', 'p') }}
{{ hqms.region_name_join('city', 'h.city_code', 'c') }}
