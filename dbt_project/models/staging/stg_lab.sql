{#- lab_ results of fever-clinic visits (实验室检验详细记录); linked to fever_ by (org, P7000).
    Three item names, which hospitals fill unevenly: item_name (P7614 standard item),
    local_item_name (P7616 in-hospital item) and detail_name (P7624 result detail). The two item
    names may name a whole panel (甲乙型流感病毒抗原) whose detail rows name one virus each, so
    int_fever_visits types each name on its own. A result is read from the qualitative text
    (P7621), the numeric value (P7620) with its reference range (P7618) and the abnormal flag
    (P7625): macros/lab_results.sql. -#}
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
    result_qualitative as result_text,
    result_value,
    reference_range,
    abnormal_flag
from {{ source('dw', 'lab') }}
