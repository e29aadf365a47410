-- Multiclass probabilities come back as an array in class order (see `udfs models show segment`).
SELECT id,
       segment(age, tenure, plan, active)          AS segment,
       segment_proba(age, tenure, plan, active)[0] AS p_core,
       segment_proba(age, tenure, plan, active)[1] AS p_key,
       segment_proba(age, tenure, plan, active)[2] AS p_loyal
FROM customers
ORDER BY id
LIMIT 10;
