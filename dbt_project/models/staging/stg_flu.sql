{#- flu_ records (门急诊和在院流感病例) with the names and types the marts use. One row per stored
    version; dw keeps the latest version per natural key, int_flu_visits de-duplicates again. -#}
select
    {{ hqms.flu_visit_columns() }},
    sex,
    age_years,
    coalesce(birth_date_age_band, {{ hqms.age_band('age_years') }}) as age_band,
    {%- for col in hqms.flu_dx_columns() %}
    {{ col }},
    {%- endfor %}
    ({% for col in hqms.flu_icu_columns() %}{{ col }} is not null{{ " or " if not loop.last }}{% endfor %}) as had_icu_stay,
    (died = '1') as died,
    death_time
from {{ source('dw', 'flu') }}
