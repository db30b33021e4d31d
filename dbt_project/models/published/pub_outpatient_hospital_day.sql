-- depends_on: {{ ref('icd10_chapters') }}
{{ config(tags=['monthly'], schema='intermediate', materialized='table') }}
{#- Outpatient pages per (report_date: the day of JZSJ, hospital): the counts and costs of outpatient_monthly, and
    one count per ICD-10 chapter of the principal diagnosis (dx_i … dx_xxii, dx_unknown; the
    chapters come from the icd10_chapters seed). antibiotic_cost is NULL, not 0, on a day no page
    reports KJYWF, with antibiotic_cost_pages counting the pages that do (as in outpatient_monthly). The day grain lets the pages roll up to
    epidemiological weeks as well as months. -#}
{%- set chapters = hqms.icd10_chapters() %}
select
    cast(v.visit_time as date) as report_date,
    v.org_code,
    h.province_code,
    h.city_code,
    count(*) as visits,
    {{ hqms.outpatient_page_counts('v') }},
    {%- for chapter in chapters %}
    {{ hqms.count_if("v.dx_chapter = '" ~ chapter ~ "'") }} as dx_{{ chapter | lower }},
    {%- endfor %}
    {{ hqms.count_if("v.dx_chapter = 'unknown'") }} as dx_unknown,
    cast(coalesce(sum(v.total_cost), 0) as decimal(18, 2)) as total_cost,
    cast(coalesce(sum(v.self_pay), 0) as decimal(18, 2)) as self_pay_cost,
    {#- KJYWF is optional: NULL when no page of the day reports it (absent, not 0.00) -#}
    cast(sum(v.antibacterial_fee) as decimal(18, 2)) as antibiotic_cost,
    {{ hqms.count_if('v.antibacterial_fee is not null') }} as antibiotic_cost_pages
from {{ ref('int_outpatient_visits') }} as v
left join {{ ref('stg_hospitals') }} as h on h.org_code = v.org_code
group by cast(v.visit_time as date), v.org_code, h.province_code, h.city_code
