{% macro outpatient_page_counts(alias='') -%}
    {#- The counts of an outpatient page mart (emergency, revisit, infusion, chronic special,
        triage levels 1–4), one definition for outpatient_monthly and the published
        aggregates' pub_outpatient_hospital_day. -#}
    {%- set p = alias ~ '.' if alias else '' -%}
    {{ hqms.count_if(p ~ 'is_emergency') }} as emergency_visits,
    {{ hqms.count_if(p ~ 'is_revisit') }} as revisits,
    {{ hqms.count_if(p ~ 'is_infusion') }} as infusion_visits,
    {{ hqms.count_if(p ~ 'is_chronic_special') }} as chronic_special_visits,
    {%- for level in range(1, 5) %}
    {{ hqms.count_if(p ~ "is_emergency and " ~ p ~ "ed_triage_level = '" ~ level ~ "'") }} as triage_level_{{ level }}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
