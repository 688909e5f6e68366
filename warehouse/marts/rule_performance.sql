-- Rule performance against fraud labels, per rule (version stripped) and UTC event date: precision = fraud-labelled / alerted transactions, recall = alerted / all fraud-labelled transactions of the day; unlabelled counts as legitimate.
WITH hits AS (
    SELECT DISTINCT day, split_part(rule, '@', 1) AS rule, transaction_id
    FROM (SELECT (event_time AT TIME ZONE 'UTC')::date AS day, unnest(rules) AS rule, transaction_id FROM alerts) x
),
fraud AS (
    SELECT DISTINCT t.date AS day, t.transaction_id
    FROM transactions t JOIN fraud_labels l ON l.transaction_id = t.transaction_id AND l.is_fraud
),
per_rule AS (
    SELECT h.day, h.rule, count(*) AS alerted_transactions, count(f.transaction_id) AS true_positives
    FROM hits h LEFT JOIN fraud f ON f.transaction_id = h.transaction_id
    GROUP BY h.day, h.rule
),
fraud_per_day AS (SELECT day, count(*) AS fraud_labelled FROM fraud GROUP BY day)
SELECT p.day,
       p.rule,
       p.alerted_transactions,
       p.true_positives,
       p.alerted_transactions - p.true_positives AS false_positives,
       coalesce(d.fraud_labelled, 0) AS fraud_labelled,
       p.true_positives::float8 / p.alerted_transactions AS precision,
       p.true_positives::float8 / nullif(d.fraud_labelled, 0) AS recall
FROM per_rule p
LEFT JOIN fraud_per_day d ON d.day = p.day
ORDER BY p.day, p.rule
