-- Save scores as a new table, two ways.

-- 1. CREATE TABLE AS over the vectorized set-returning form.
DROP TABLE IF EXISTS churn_scores_ctas;
CREATE TABLE churn_scores_ctas AS
SELECT c.id, c.plan, b.prediction AS churn, b.probability AS churn_probability
FROM customers c
JOIN ml.churn_batch('customers', 'id') b ON b.key = c.id::text;

-- 2. The procedure: kept columns plus prediction (and probability), read in chunks.
-- For a consistent result while others write to customers, run it inside
-- BEGIN ISOLATION LEVEL REPEATABLE READ; ... COMMIT;
DROP TABLE IF EXISTS churn_scores;
CALL ml.score_table('churn', 'customers', 'churn_scores', ARRAY['id', 'plan']);

SELECT count(*) AS scored, avg(probability) AS mean_probability FROM churn_scores;
