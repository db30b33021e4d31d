{#- lis_ lab records of flu visits (检验记录); linked to flu_ by (org, visit type, card, visit time). -#}
select
    _org_code as org_code,
    _nk as record_key,
    _loaded_at,
    visit_type,
    visit_card_no_pid as visit_card_pid,
    visit_time,
    cast(visit_time as date) as visit_date,
    test_time,
    flu_item as item_code,
    (positive = '1') as is_positive
from {{ source('dw', 'lis') }}
