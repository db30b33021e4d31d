{#- The hospital registry (deployment data in ref.hospitals), with region names from the seed. -#}
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
left join {{ ref('regions') }} as p on p.region_code = h.province_code
left join {{ ref('regions') }} as c on c.region_code = h.city_code
