{#- Uploads that reached ingest, with local (China Standard Time) receive time. -#}
select
    upload_id,
    stream,
    org_code,
    file_name,
    received_at,
    {{ hqms.local_timestamp('received_at') }} as received_local,
    status,
    status in ('processed', 'partially_accepted') as is_accepted,
    coalesce(record_count, 0) as record_count,
    coalesce(conforming_count, 0) as conforming_count,
    processed_at
from {{ source('ops', 'uploads') }}
