-- Customer spending profiles: per customer, how much, how often, where and how they pay (the baseline a rule compares against).
-- The distinct counts run as an aggregate of their own, apart from the joins (and percentiles): one aggregate
-- holding all of them cost DuckDB up to 1.6x the CPU on a 10M-row lake (docs/benchmarks.md).
WITH flagged AS (SELECT DISTINCT transaction_id FROM alerts),
     fraud AS (SELECT DISTINCT transaction_id FROM fraud_labels WHERE is_fraud),
     distinct_counts AS (
         SELECT customer_id, bank_id, count(DISTINCT card_token) AS cards,
                count(DISTINCT date) AS active_days,
                count(DISTINCT merchant_id) AS merchants, count(DISTINCT country) AS countries
         FROM transactions GROUP BY customer_id, bank_id
     ),
     totals AS (
         SELECT t.customer_id,
                t.bank_id,
                count(*) AS transactions,
                avg(t.amount_minor)::float8 AS amount_minor_avg,
                stddev_samp(t.amount_minor)::float8 AS amount_minor_stddev,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY t.amount_minor::float8) AS amount_minor_p50,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY t.amount_minor::float8) AS amount_minor_p95,
                max(t.amount_minor) AS amount_minor_max,
                count(*) FILTER (WHERE t.channel IN ('ECOM', 'MOBILE'))::float8 / count(*) AS online_share,
                count(*) FILTER (WHERE t.channel = 'ATM')::float8 / count(*) AS atm_share,
                count(*) FILTER (WHERE extract(hour FROM t.event_time AT TIME ZONE 'UTC') < 6)::float8 / count(*)
                    AS night_share_utc,
                count(f.transaction_id) AS alerted_transactions,
                count(l.transaction_id) AS fraud_labelled,
                min(t.event_time) AS first_seen,
                max(t.event_time) AS last_seen
         FROM transactions t
         LEFT JOIN flagged f ON f.transaction_id = t.transaction_id
         LEFT JOIN fraud l ON l.transaction_id = t.transaction_id
         GROUP BY t.customer_id, t.bank_id
     )
SELECT t.customer_id, t.bank_id, t.transactions, d.cards, d.active_days, t.amount_minor_avg, t.amount_minor_stddev,
       t.amount_minor_p50, t.amount_minor_p95, t.amount_minor_max, d.merchants, d.countries, t.online_share,
       t.atm_share, t.night_share_utc, t.alerted_transactions, t.fraud_labelled, t.first_seen, t.last_seen
FROM totals t JOIN distinct_counts d USING (customer_id, bank_id)
ORDER BY customer_id, bank_id
