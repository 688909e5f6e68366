-- Terminal risk over the whole lake: per terminal, volume, cards, countries, alerted and fraud-labelled shares (a compromised terminal shows many fraud-labelled cards).
WITH flagged AS (SELECT DISTINCT transaction_id FROM alerts),
     fraud AS (SELECT DISTINCT transaction_id FROM fraud_labels WHERE is_fraud)
SELECT t.terminal_id,
       min(t.merchant_id) AS merchant_id,
       count(*) AS transactions,
       count(DISTINCT t.card_token) AS cards,
       count(DISTINCT t.card_token) FILTER (WHERE l.transaction_id IS NOT NULL) AS fraud_cards,
       count(DISTINCT t.country) AS countries,
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
ORDER BY fraud_rate DESC, alert_rate DESC, transactions DESC, t.terminal_id
