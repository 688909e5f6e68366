-- Daily KPIs per bank and channel (UTC event date): volume, cards, customers, amounts (minor units, all currencies), alerted and fraud-labelled transactions.
-- Runs unchanged on DuckDB (over the lake) and PostgreSQL (over the archive plus the lake's `date` column); the tests
-- compare the two. `date` is the partition's UTC event date: free in the lake, where AT TIME ZONE costs ICU per row.
WITH flagged AS (SELECT DISTINCT transaction_id FROM alerts),
     fraud AS (SELECT DISTINCT transaction_id FROM fraud_labels WHERE is_fraud)
SELECT t.date AS day,
       t.bank_id,
       t.channel,
       count(*) AS transactions,
       count(DISTINCT t.card_token) AS cards,
       count(DISTINCT t.customer_id) AS customers,
       sum(t.amount_minor)::bigint AS amount_minor_sum,
       avg(t.amount_minor)::float8 AS amount_minor_avg,
       count(f.transaction_id) AS alerted_transactions,
       count(l.transaction_id) AS fraud_labelled,
       count(f.transaction_id)::float8 / count(*) AS alert_rate,
       count(l.transaction_id)::float8 / count(*) AS fraud_rate
FROM transactions t
LEFT JOIN flagged f ON f.transaction_id = t.transaction_id
LEFT JOIN fraud l ON l.transaction_id = t.transaction_id
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
