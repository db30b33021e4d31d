{#- lab_ results of fever-clinic visits (实验室检验详细记录); linked to fever_ by (org, P7000).
    Three item names, which hospitals fill unevenly: item_name (P7614 standard item),
    local_item_name (P7616 in-hospital item) and detail_name (P7624 result detail). The two item
    names may name a whole panel (甲乙型流感病毒抗原) whose detail rows name one virus each, so
    int_fever_visits types each name on its own. -#}
select
    _org_code as org_code,
    _nk as record_key,
    _loaded_at,
    opd_visit_serial_pid as visit_serial_pid,
    visit_time,
    cast(visit_time as date) as visit_date,
    item_name,
    local_item_name,
    detail_name,
    result_qualitative as result_text
from {{ source('dw', 'lab') }}
