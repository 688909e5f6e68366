-- Terminal risk over the whole lake: per terminal, volume, cards, countries, alerted and fraud-labelled shares (a compromised terminal shows many fraud-labelled cards).
-- The distinct counts run as an aggregate of their own, apart from the joins (and percentiles): one aggregate
-- holding all of them cost DuckDB up to 1.6x the CPU on a 10M-row lake (docs/benchmarks.md).
WITH flagged AS (SELECT DISTINCT transaction_id FROM alerts),
     fraud AS (SELECT DISTINCT transaction_id FROM fraud_labels WHERE is_fraud),
     distinct_counts AS (
         SELECT terminal_id, count(DISTINCT card_token) AS cards, count(DISTINCT country) AS countries
         FROM transactions GROUP BY terminal_id
     ),
     totals AS (
         SELECT t.terminal_id,
                min(t.merchant_id) AS merchant_id,
                count(*) AS transactions,
                count(DISTINCT t.card_token) FILTER (WHERE l.transaction_id IS NOT NULL) AS fraud_cards,
                count(f.transaction_id) AS alerted_transactions,
                count(l.transaction_id) AS fraud_labelled,
                count(f.transaction_id)::float8 / count(*) AS alert_rate,
                count(l.transaction_id)::float8 / count(*) AS fraud_rate,
                min(t.event_time) AS first_seen,
                max(t.event_time) AS last_seen
         FROM transactions t
         LEFT JOIN flagged f ON f.transaction_id = t.transaction_id
         LEFT JOIN fraud l ON l.transaction_id = t.transaction_id
         GROUP BY t.terminal_id
     )
SELECT t.terminal_id, t.merchant_id, t.transactions, d.cards, t.fraud_cards, d.countries, t.alerted_transactions,
       t.fraud_labelled, t.alert_rate, t.fraud_rate, t.first_seen, t.last_seen
FROM totals t JOIN distinct_counts d USING (terminal_id)
ORDER BY fraud_rate DESC, alert_rate DESC, transactions DESC, terminal_id
