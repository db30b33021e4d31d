{#- One row per outpatient visit (mzsy_, de-duplicated by natural key = JZKH + JZSJ within the org)
    with the ICD-10 chapter of its principal diagnosis. -#}
with latest as (
    {{ hqms.latest_version(ref('stg_outpatient')) }}
)

select
    v.org_code,
    v.record_key,
    v.visit_time,
    v.visit_month,
    v.is_emergency,
    v.is_revisit,
    v.is_infusion,
    v.is_chronic_special,
    v.ed_triage_level,
    v.principal_dx_code,
    coalesce(ch.chapter, 'unknown') as dx_chapter,
    v.total_cost,
    v.self_pay,
    v.antibacterial_fee,
    v._loaded_at
from latest as v
left join {{ ref('icd10_chapters') }} as ch
    on upper(substr(v.principal_dx_code, 1, 3)) between ch.code_from and ch.code_to
