{{ config(tags=['daily'], schema='intermediate', materialized='view') }}
{#- fever_daily with one more count: visits whose diagnosis (P7700-style opd_dx_code) is an
    influenza code of the flu_icd10 seed (J09–J11) — the numerator of the flu-like share.
    Visits de-duplicated as int_fever_visits does (latest version per natural key). -#}
with visits as (
    {{ hqms.latest_version(ref('stg_fever')) }}
),

flu_like as (
    select v.visit_date as report_date, v.org_code, count(*) as flu_like_visits
    from visits as v
    where exists (
        select 1 from {{ ref('flu_icd10') }} as i where {{ hqms.starts_with_ci('v.opd_dx_code', 'i.code_prefix') }}
    )
    group by v.visit_date, v.org_code
)

select
    f.*,
    cast(coalesce(fl.flu_like_visits, 0) as {{ dbt.type_bigint() }}) as flu_like_visits
from {{ ref('fever_daily') }} as f
left join flu_like as fl on fl.report_date = f.report_date and fl.org_code = f.org_code
