{#- pdr_ drug records of flu visits (用药记录); linked to flu_ like lis_. -#}
select
    _org_code as org_code,
    _nk as record_key,
    _loaded_at,
    visit_type,
    visit_card_no_pid as visit_card_pid,
    visit_time,
    cast(visit_time as date) as visit_date,
    drug_name,
    start_time
from {{ source('dw', 'pdr') }}
