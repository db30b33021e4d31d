{#- One row per outpatient visit (mzsy_, de-duplicated by natural key = JZKH + JZSJ + JZKSDM within the org)
    with the ICD-10 chapter of its principal diagnosis.

    Date-only visit times (docs/marts.md; macros/visit_time.sql). JZSJ may be written as a date
    only, stored at 00:00:00, and JZSJ is part of the key: a hospital whose exporter switches
    between date-time and date-only between re-sends creates new keys for the same visits. After
    the latest version per natural key, hqms.drop_precision_switches drops a page when a newer
    upload (received_at, then _loaded_at) sent a page of the same org + card (JZKH pseudonym) on
    the same date in the other precision. Pages of one upload never drop each other.
    Known limitation: a visit genuinely recorded at exactly 00:00:00 counts as date-only.

    Re-sent files (macros/resent_files.sql). A page file is the hospital's complete statement of
    its month: a corrected file re-sent under the same name (copy marks and letter case aside)
    replaces the earlier one as a whole. Keys re-sent are replaced by latest_version already;
    hqms.drop_replaced_files also drops the older version's pages whose key changed (a corrected
    JZSJ) or that were left out. Which upload holds the newest version of a file comes from the
    upload record (int_file_versions), not from the rows that survive the merge. It runs before
    the precision switch, so a page the newest version of its file withdrew supersedes nothing. -#}
with latest as (
    {{ hqms.latest_version(ref('stg_outpatient')) }}
),

current_files as (
    {{ hqms.drop_replaced_files('latest', ref('int_file_versions'), 'mzsy') }}
),

visits as (
    {{ hqms.drop_precision_switches('current_files', ['visit_card_pid']) }}
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
    -- 'unknown': no code, a code not shaped like one (letter + two digits), or a well-shaped code
    -- outside every chapter range (U99, D49, K94: not in WHO ICD-10 2019 nor the national list)
    coalesce(ch.chapter, 'unknown') as dx_chapter,
    v.total_cost,
    v.self_pay,
    v.antibacterial_fee,
    v._loaded_at
from visits as v
left join {{ ref('icd10_chapters') }} as ch
    on regexp_matches(upper(trim(v.principal_dx_code)), '^[A-Z][0-9][0-9]')
   and upper(substr(trim(v.principal_dx_code), 1, 3)) between ch.code_from and ch.code_to
