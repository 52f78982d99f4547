"""RFM scores and segment maps: how ``[policy.rfm]`` scores recency, frequency and monetary value, in SQL.

Who is scored: the members with at least one successful order, or with ``window_days`` the members with one in the
last ``window_days`` days, whose frequency and monetary value then count only those orders (so a buyer long gone is
never a Champion). Recency is the whole days since the member's last successful order. Monetary value is spend, or
with ``monetary = "spend_net"`` spend net of refunds.

Methods (``method``):

- ``quantile`` (the default, except with ``segments = "classic8"``): scores 1..``bins``; with ``n`` members scored and
  ``w`` of them strictly worse on the dimension, the score is ``1 + floor(bins * w / n)``. With ``f_ties =
  "consecutive"`` a frequency score is at most one above that of the next lower order count, so that when most
  members have one order, two orders score 2, not 4.
- ``mean`` and ``median``: 2 (high) when strictly better than the mean (median) of the members scored, else 1 (low):
  recency high means fewer days since the last order. Compared exactly (``x * n > sum``; the median of an even
  count is the midpoint of the two middle values).

Segment maps (``segments``): the standard 11-segment map (quantile, 5 bins), ``classic8`` (the eight segments of
Chinese CRM practice, high or low on each of R, F, M; English or Chinese names with ``names``), or your own list.
"""

from __future__ import annotations

from crmsync.policy import metrics as M
from crmsync.policy.model import RfmSettings

STANDARD_SEGMENTS: list[tuple[str, str]] = [
    ("Champions", "rfm_r >= 4 and rfm_fm >= 4"),
    ("Need Attention", "rfm_r = 3 and rfm_fm between 2 and 3"),
    ("Loyal", "rfm_r >= 3 and rfm_fm >= 3"),
    ("Potential Loyalist", "rfm_r >= 4 and rfm_fm = 2"),
    ("New", "rfm_r = 5 and rfm_fm = 1"),
    ("Promising", "rfm_r = 4 and rfm_fm = 1"),
    ("About to Sleep", "(rfm_r = 3 and rfm_fm = 1) or (rfm_r = 2 and rfm_fm = 2)"),
    ("Can't Lose Them", "(rfm_r = 1 and rfm_fm >= 4) or (rfm_r = 2 and rfm_fm = 5)"),
    ("At Risk", "rfm_r <= 2 and rfm_fm >= 3"),
    ("Hibernating", "(rfm_r = 2 and rfm_fm = 1) or (rfm_r = 1 and rfm_fm = 2)"),
    ("Lost", "rfm_r = 1 and rfm_fm = 1"),
]
"""The standard map for 5 bins, first match wins; ``rfm_fm = (rfm_f + rfm_m + 1) // 2`` (F and M averaged,
halves rounded up)."""

CLASSIC8: list[tuple[str, str, str]] = [
    ("Important Value", "重要价值客户", "rfm_r = 2 and rfm_f = 2 and rfm_m = 2"),
    ("Important Development", "重要发展客户", "rfm_r = 2 and rfm_f = 1 and rfm_m = 2"),
    ("Important Retention", "重要保持客户", "rfm_r = 1 and rfm_f = 2 and rfm_m = 2"),
    ("Important Win-back", "重要挽留客户", "rfm_r = 1 and rfm_f = 1 and rfm_m = 2"),
    ("General Value", "一般价值客户", "rfm_r = 2 and rfm_f = 2 and rfm_m = 1"),
    ("General Development", "一般发展客户", "rfm_r = 2 and rfm_f = 1 and rfm_m = 1"),
    ("General Retention", "一般保持客户", "rfm_r = 1 and rfm_f = 2 and rfm_m = 1"),
    ("General Win-back", "一般挽留客户", "rfm_r = 1 and rfm_f = 1 and rfm_m = 1"),
]
"""The classic 8-segment map: (English name, Chinese name, condition); 2 = high, 1 = low. 重要 (important) = high
monetary value; 价值 (value) = recent and frequent, 发展 (development) = recent, not frequent, 保持 (retention) =
frequent, not recent, 挽留 (win-back) = neither."""


def method(rfm: RfmSettings) -> str:
    """The scoring method in effect: ``method``, else ``mean`` for the classic 8-segment map, else ``quantile``."""
    return rfm.method or ("mean" if rfm.segments == "classic8" else "quantile")


def two_level(rfm: RfmSettings) -> bool:
    """Whether scores are 1 (low) or 2 (high) only."""
    return method(rfm) != "quantile" or rfm.bins == 2


def segments(rfm: RfmSettings) -> list[tuple[str, str]]:
    """The segment map in effect, ``(name, condition)`` in order (first match wins)."""
    if rfm.segments == "classic8":
        return [(zh if rfm.names == "zh" else en, cond) for en, zh, cond in CLASSIC8]
    if rfm.segments is None or rfm.segments == "standard":
        return list(STANDARD_SEGMENTS)
    return [(s.name, s.condition) for s in rfm.segments]


def problems(rfm: RfmSettings) -> list[str]:
    """What does not fit together in ``[policy.rfm]``, one ``policy.rfm.key: problem`` line each."""
    out = []
    how = method(rfm)
    if how != "quantile" and rfm.bins not in (2, 5):  # 5: the default, left as it is
        out.append(f"policy.rfm.bins: method = '{how}' scores 1 (low) or 2 (high); bins applies to 'quantile'")
    if how != "quantile" and rfm.f_ties != "quantile":
        out.append(f"policy.rfm.f_ties: ties of scores only arise with method = 'quantile', not '{how}'")
    if rfm.segments == "classic8" and not two_level(rfm):
        out.append("policy.rfm.segments: 'classic8' needs high/low scores: method = 'mean' or 'median', or bins = 2")
    if (rfm.segments is None or rfm.segments == "standard") and (how != "quantile" or rfm.bins != 5):
        out.append(
            "policy.rfm.segments: the standard segment map needs bins = 5 (method = 'quantile'); "
            "use segments = 'classic8' or give your own map"
        )
    if rfm.names == "zh" and rfm.segments != "classic8":
        out.append("policy.rfm.names: Chinese names are those of segments = 'classic8'")
    return out


def _columns(rfm: RfmSettings) -> tuple[str, str]:
    """The metrics read as frequency and monetary value."""
    span = f"{rfm.window_days}d" if rfm.window_days else "lifetime"
    return f"orders_{span}", f"{rfm.monetary}_{span}"


def needed(rfm: RfmSettings) -> list[M.Metric]:
    """The metrics scoring reads beyond those every policy computes (windowed or net ones)."""
    out = []
    for name in _columns(rfm):
        if name not in M.FIXED:
            metric = M.resolve(name, None, {})
            assert metric is not None
            out.append(metric)
    return out


def scores_sql(rfm: RfmSettings) -> str:
    """The statement building ``_pol_rfm``: each scored member's ``rfm_r``, ``rfm_f``, ``rfm_m``, the values they
    were scored on (``_rfm_freq``, ``_rfm_mon``) and ``_rfm_basis`` (what "high" was measured against); needs
    ``_pol_metrics``."""
    freq, mon = _columns(rfm)
    base = (
        f'SELECT member_id, days_since_last_order AS rec, "{freq}" AS freq, CAST("{mon}" AS DECIMAL(38,4)) AS mon '
        f'FROM _pol_metrics WHERE "{freq}" > 0'
    )
    how = method(rfm)
    if how == "quantile":
        return _quantile_sql(rfm, base)
    stats, lo_hi = "", {}
    for col in ("rec", "freq", "mon"):
        if how == "mean":
            stats += f", sum({col}) AS _s_{col}"
            lo_hi[col] = (f"{col} * c.n", f"c._s_{col}", f"round(c._s_{col} / c.n, 2)")
        else:
            stats += f", list_sort(list({col})) AS _l_{col}"
            mid = f"c._l_{col}[(c.n + 1) // 2] + c._l_{col}[c.n // 2 + 1]"
            lo_hi[col] = (f"2 * {col}", mid, f"round(({mid}) / 2, 2)")
    r, f, m = (lo_hi[c] for c in ("rec", "freq", "mon"))
    basis = f"'{how} of ' || c.n || ' members: ' || {r[2]} || ' days, ' || {f[2]} || ' orders, spend ' || {m[2]}" + (
        f" || ' (last {rfm.window_days} days)'" if rfm.window_days else ""
    )
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_rfm AS
WITH base AS ({base}), c AS (SELECT count(*) AS n {stats} FROM base)
SELECT member_id,
  CAST(CASE WHEN {r[0]} < {r[1]} THEN 2 ELSE 1 END AS INTEGER) AS rfm_r,
  CAST(CASE WHEN {f[0]} > {f[1]} THEN 2 ELSE 1 END AS INTEGER) AS rfm_f,
  CAST(CASE WHEN {m[0]} > {m[1]} THEN 2 ELSE 1 END AS INTEGER) AS rfm_m,
  freq AS _rfm_freq, mon AS _rfm_mon, {basis} AS _rfm_basis
FROM base, c
"""


def _quantile_sql(rfm: RfmSettings, base: str) -> str:
    b = rfm.bins
    score = "CAST(1 + ({b} * (rank() OVER (ORDER BY {col} {dir}) - 1)) // c.n AS INTEGER)"
    r = score.format(b=b, col="rec", dir="DESC")
    f = score.format(b=b, col="freq", dir="ASC")
    m = score.format(b=b, col="mon", dir="ASC")
    window = f"'orders in the last {rfm.window_days} days'" if rfm.window_days else "NULL"
    if rfm.f_ties != "consecutive":
        return f"""
CREATE OR REPLACE TEMP TABLE _pol_rfm AS
WITH base AS ({base}), c AS (SELECT count(*) AS n FROM base)
SELECT member_id, {r} AS rfm_r, {f} AS rfm_f, {m} AS rfm_m, freq AS _rfm_freq, mon AS _rfm_mon,
  {window} AS _rfm_basis
FROM base, c
"""
    # s_i = min(q_i, s_{i-1} + 1) over the distinct order counts in order = dense rank + running min of (q - rank)
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_rfm AS
WITH base AS ({base}), c AS (SELECT count(*) AS n FROM base),
q AS (SELECT *, {r} AS rfm_r, {f} AS _q, dense_rank() OVER (ORDER BY freq) AS _d, {m} AS rfm_m FROM base, c)
SELECT member_id, rfm_r, CAST(_d + min(_q - _d) OVER (ORDER BY freq) AS INTEGER) AS rfm_f, rfm_m,
  freq AS _rfm_freq, mon AS _rfm_mon, {window} AS _rfm_basis
FROM q
"""


def reason_sql(rfm: RfmSettings) -> str:
    """The RFM reason over a row of ``_pol_stage`` (as before for the default settings)."""
    two = two_level(rfm)

    def level(col: str) -> str:
        return f"{col} || CASE {col} WHEN 2 THEN ' high' ELSE ' low' END" if two else col

    span = f" in the last {rfm.window_days} days" if rfm.window_days else ""
    spend = "net spend" if rfm.monetary == "spend_net" else "spend"
    return (
        "CASE WHEN rfm_r IS NULL THEN "
        + (f"'no successful order{span}'" if span else "'no successful order'")
        + f" ELSE 'R=' || {level('rfm_r')} || ' (' || days_since_last_order || ' days since the last order), F=' || "
        f"{level('rfm_f')} || ' (' || _rfm_freq || ' orders{span}), M=' || {level('rfm_m')} || "
        f"' ({spend} ' || _rfm_mon || ')'"
        + (" || coalesce('; ' || _rfm_basis, '')" if two or span else "")
        + " || coalesce('; segment ' || rfm_segment, '') END"
    )
