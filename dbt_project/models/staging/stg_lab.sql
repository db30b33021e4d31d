{#- lab_ results of fever-clinic visits (实验室检验详细记录); linked to fever_ by (org, P7000).
    test_name joins the standard, in-hospital and detail item names, which hospitals fill unevenly. -#}
select
    _org_code as org_code,
    _nk as record_key,
    _loaded_at,
    opd_visit_serial_pid as visit_serial_pid,
    visit_time,
    cast(visit_time as date) as visit_date,
    {{ dbt.concat(["coalesce(item_name, '')", "' | '", "coalesce(local_item_name, '')",
                   "' | '", "coalesce(detail_name, '')"]) }} as test_name,
    result_qualitative as result_text
from {{ source('dw', 'lab') }}
