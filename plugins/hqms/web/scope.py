"""Who may see what, and the scoped read queries behind every page and API route.

Every route that returns upload data goes through these functions with the asking
:class:`~hqms.accounts.Principal`: a hospital sees its own org, a city or province administrator
the hospitals of their region (by the hospital accounts' GB/T 2260 region codes), a national
administrator or operator everything. An upload outside the asker's scope is answered exactly
like an unknown one (``None`` → 404), so ids cannot be probed.

Reads use the registry's tables directly (offset paging and filter values need SQL the
registry's own API does not offer); writes stay with :mod:`hqms.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from hqms.accounts import Accounts, Principal
from hqms.registry import upload_errors, uploads

#: The error-list filters a data manager can set (query parameter → column).
ERROR_FILTERS = {"file": upload_errors.c.file_name, "column": upload_errors.c.column_code,
                 "rule": upload_errors.c.rule}


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return 0 if not self.total else (self.page - 1) * self.size + 1

    @property
    def last(self) -> int:
        return min(self.total, self.page * self.size)


def _org_filter(accounts: Accounts, who: Principal):
    orgs = accounts.orgs_in_scope(who)
    if orgs is None:
        return sa.true()
    return uploads.c.org_code.in_(sorted(orgs)) if orgs else sa.false()


def page_uploads(accounts: Accounts, who: Principal, page: int = 1, size: int = 10,
                 org: str | None = None, sha256: str | None = None) -> Page:
    """The upload record list in the asker's scope, newest first."""
    page, size = max(1, page), min(max(1, size), 200)
    where = [_org_filter(accounts, who)]
    if org:
        where.append(uploads.c.org_code == org)
    if sha256:
        where.append(uploads.c.sha256 == sha256)
    query = (sa.select(uploads).where(*where)
             .order_by(uploads.c.received_at.desc(), uploads.c.upload_id.desc())
             .limit(size).offset((page - 1) * size))
    with accounts.engine.connect() as con:
        total = con.execute(sa.select(sa.func.count()).select_from(uploads).where(*where)).scalar_one()
        rows = [dict(r._mapping) for r in con.execute(query)]
    return Page(rows, total, page, size)


def get_upload(accounts: Accounts, who: Principal, upload_id: str) -> dict | None:
    """One upload, or None when it does not exist *or* is outside the asker's scope."""
    query = sa.select(uploads).where(uploads.c.upload_id == upload_id, _org_filter(accounts, who))
    with accounts.engine.connect() as con:
        row = con.execute(query).first()
    return dict(row._mapping) if row else None


def page_errors(accounts: Accounts, upload_id: str, page: int = 1, size: int = 50,
                **filters: str | None) -> Page:
    """One upload's errors in report order (call only after :func:`get_upload` allowed it)."""
    page, size = max(1, page), min(max(1, size), 500)
    where = [upload_errors.c.upload_id == upload_id]
    where += [ERROR_FILTERS[k] == v for k, v in filters.items() if v]
    query = (sa.select(upload_errors).where(*where).order_by(upload_errors.c.seq)
             .limit(size).offset((page - 1) * size))
    with accounts.engine.connect() as con:
        total = con.execute(sa.select(sa.func.count()).select_from(upload_errors).where(*where)).scalar_one()
        rows = [{**r._mapping, "column": r.column_code} for r in con.execute(query)]
    return Page(rows, total, page, size)


def error_filter_values(accounts: Accounts, upload_id: str) -> dict[str, list[str]]:
    """The distinct files, columns and rules of an upload's errors (the filter choices)."""
    out = {}
    with accounts.engine.connect() as con:
        for name, col in ERROR_FILTERS.items():
            query = (sa.select(col).where(upload_errors.c.upload_id == upload_id, col.is_not(None))
                     .distinct().order_by(col))
            out[name] = [v for (v,) in con.execute(query)]
    return out


def last_uploads(accounts: Accounts, orgs: list[str]) -> dict[str, dict]:
    """Each org's newest upload record (for the administrators' hospital list)."""
    if not orgs:
        return {}
    newest = (sa.select(uploads.c.org_code, sa.func.max(uploads.c.received_at).label("at"))
              .where(uploads.c.org_code.in_(orgs)).group_by(uploads.c.org_code).subquery())
    query = sa.select(uploads).join(newest, sa.and_(uploads.c.org_code == newest.c.org_code,
                                                    uploads.c.received_at == newest.c.at))
    with accounts.engine.connect() as con:
        return {r.org_code: dict(r._mapping) for r in con.execute(query)}


def org_in_scope(accounts: Accounts, who: Principal, org: str) -> bool:
    orgs = accounts.orgs_in_scope(who)
    return orgs is None or org in orgs
