{#- lis_ lab records of flu visits (检验记录); linked to flu_ by (org, visit type, card, visit time).
    test_record_pid (P8000) and received_at let int_flu_visits drop a record re-sent with P7506 in
    the other precision (its natural key P7501 + P7502 + P7506 + P8000 then changes). -#}
select
    {{ hqms.flu_visit_columns() }},
    test_record_id_pid as test_record_pid,
    test_time,
    flu_item as item_code,
    -- P8004 结果是否阳性 (1 阳性, 2 阴性/其他; required) is the interface's own positive code and
    -- decides; the text P8003 only where it is missing (macros/lab_results.sql)
    {{ hqms.lab_result_status('result_text', flag='positive', flag_codes={'1': 'positive', '2': 'negative'},
                              flag_first=true) }} = 'positive' as is_positive
from {{ source('dw', 'lis') }}
