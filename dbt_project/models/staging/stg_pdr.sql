{#- pdr_ drug records of flu visits (用药记录); linked to flu_ like lis_. order_line_pid (P7500)
    and received_at serve the precision-switch rule like lis_ (natural key P7501 + P7502 + P7506
    + P7500). -#}
select
    {{ hqms.flu_visit_columns() }},
    order_line_id_pid as order_line_pid,
    drug_name,
    start_time
from {{ source('dw', 'pdr') }}
