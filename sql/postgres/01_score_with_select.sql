-- Score rows with plain SQL: one call per row, typed arguments in signature order.
-- (Needs: udfs pg install; udfs pg deploy churn; a customers table with the feature columns.)
SELECT id,
       ml.churn(age, tenure, plan, active)       AS churn,
       ml.churn_proba(age, tenure, plan, active) AS churn_probability
FROM customers
ORDER BY id
LIMIT 10;

-- A whole table at once: the vectorized set-returning form, keyed by a column of your choice.
SELECT key::bigint AS id, prediction, probability
FROM ml.churn_batch('customers', 'id')
ORDER BY 1
LIMIT 10;
