{#- mzsy_ outpatient information pages (门（急）诊诊疗信息页, western), one row per stored version. -#}
select
    _org_code as org_code,
    _nk as record_key,
    _received_at as received_at,
    _loaded_at,
    -- which upload and file the stored version came from: a re-sent file replaces its earlier
    -- version as a whole (int_outpatient_visits, macros/resent_files.sql)
    _upload_id as upload_id,
    _source_file as source_file,
    visit_card_no_pid as visit_card_pid,
    visit_time,
    cast({{ dbt.date_trunc('month', 'visit_time') }} as date) as visit_month,
    visit_type,
    (visit_type = '1') as is_emergency,
    (revisit = '1') as is_revisit,
    (iv_infusion = '1') as is_infusion,
    (chronic_special_disease = '1') as is_chronic_special,
    ed_triage_level,
    principal_dx_code,
    total_cost,
    self_pay,
    antibacterial_fee
from {{ source('dw', 'mzsy') }}
