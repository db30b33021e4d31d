{#- fever_ records (发热门诊就诊记录): one row per stored version of a visit (P7000). -#}
select
    _org_code as org_code,
    _nk as record_key,
    _received_at as received_at,
    _loaded_at,
    opd_visit_serial_pid as visit_serial_pid,
    visit_time,
    cast(visit_time as date) as visit_date,
    sex,
    age_years,
    coalesce(birth_date_age_band, {{ hqms.age_band('age_years') }}) as age_band,
    (first_visit = '1') as is_first_visit,
    (referred = '1') as is_referral,
    (observation_stay = '1') as is_observation_stay,
    opd_dx_code,
    total_cost
from {{ source('dw', 'fever') }}
