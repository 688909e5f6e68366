-- Per-card features over event time (`rowtime` = Kafka timestamp = event_time), all in the JVM.
-- Flink needs one frame per OVER select, so each frame is its own view and the views are chained.

-- amounts in euros (reference rates, flink/fx.py) so history in several currencies compares
CREATE TEMPORARY VIEW f_base AS
SELECT *, ${amount_eur} AS amount_eur
FROM transactions_valid;

-- the card's last geo-located position and last card-present terminal up to and including this row
-- (LAST_VALUE skips nulls)
CREATE TEMPORARY VIEW f_geo AS
SELECT *,
  LAST_VALUE(lat) OVER w AS geo_lat,
  LAST_VALUE(lon) OVER w AS geo_lon,
  LAST_VALUE(CASE WHEN lat IS NOT NULL THEN event_ms END) OVER w AS geo_ms,
  LAST_VALUE(CASE WHEN channel = 'POS' THEN terminal_id END) OVER w AS pos_terminal,
  LAST_VALUE(CASE WHEN channel = 'POS' AND terminal_id IS NOT NULL THEN event_ms END) OVER w AS pos_ms
FROM f_base
WINDOW w AS (PARTITION BY card_token ORDER BY rowtime ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

-- how often this card has used this device so far (1 = first time)
CREATE TEMPORARY VIEW f_device AS
SELECT *,
  COUNT(*) OVER (PARTITION BY card_token, device_id ORDER BY rowtime
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS device_uses
FROM f_geo;

-- the card's last position and terminal before this row (LAG takes no frame, so it gets its own view)
CREATE TEMPORARY VIEW f_prev AS
SELECT *,
  LAG(geo_lat) OVER w AS prev_lat,
  LAG(geo_lon) OVER w AS prev_lon,
  LAG(geo_ms) OVER w AS prev_geo_ms,
  LAG(pos_terminal) OVER w AS prev_pos_terminal,
  LAG(pos_ms) OVER w AS prev_pos_ms
FROM f_device
WINDOW w AS (PARTITION BY card_token ORDER BY rowtime);

-- the card's last 50 transactions, excluding this one: amount profile, rate, devices
CREATE TEMPORARY VIEW f_history AS
SELECT *,
  COUNT(*) OVER w - 1 AS hist_n,
  SUM(LN(amount_eur)) OVER w - LN(amount_eur) AS hist_sum_log,
  SUM(LN(amount_eur) * LN(amount_eur)) OVER w - LN(amount_eur) * LN(amount_eur) AS hist_sumsq_log,
  (event_ms - MIN(event_ms) OVER w) / 1000.0 AS hist_span_s,
  COUNT(device_id) OVER w - CASE WHEN device_id IS NULL THEN 0 ELSE 1 END AS device_hist
FROM f_prev
WINDOW w AS (PARTITION BY card_token ORDER BY rowtime ROWS BETWEEN 50 PRECEDING AND CURRENT ROW);

-- tiny charges in the last 30 minutes before this one (card testing probes)
CREATE TEMPORARY VIEW f_30m AS
SELECT *,
  SUM(CASE WHEN amount_eur < ${tiny_eur} THEN 1 ELSE 0 END) OVER w
    - CASE WHEN amount_eur < ${tiny_eur} THEN 1 ELSE 0 END AS tiny_30m
FROM f_history
WINDOW w AS (PARTITION BY card_token ORDER BY rowtime RANGE BETWEEN INTERVAL '30' MINUTE PRECEDING AND CURRENT ROW);

-- velocity: transactions and spend in the last 10 minutes, this one included
CREATE TEMPORARY VIEW f_10m AS
SELECT *,
  COUNT(*) OVER w AS cnt_10m,
  SUM(amount_eur) OVER w AS sum_eur_10m
FROM f_30m
WINDOW w AS (PARTITION BY card_token ORDER BY rowtime RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW);

-- travel from the previous card-present use (haversine, km) and the time it took
CREATE TEMPORARY VIEW features AS
SELECT *,
  CASE WHEN lat IS NOT NULL AND prev_lat IS NOT NULL THEN
    2 * 6371.0 * ASIN(SQRT(LEAST(1.0,
      POWER(SIN(RADIANS(lat - prev_lat) / 2), 2)
      + COS(RADIANS(prev_lat)) * COS(RADIANS(lat)) * POWER(SIN(RADIANS(lon - prev_lon) / 2), 2))))
  END AS distance_km,
  CASE WHEN lat IS NOT NULL AND prev_geo_ms IS NOT NULL THEN (event_ms - prev_geo_ms) / 1000.0 END AS gap_s
FROM f_10m;
