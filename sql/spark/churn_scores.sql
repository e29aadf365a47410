-- Score every customer with the churn and segment models and save the result as a new table.
-- Run: udfs spark sql sql/spark/churn_scores.sql   (or spark-submit spark_jobs/score_sql.py ...)
DROP TABLE IF EXISTS churn_scores;

CREATE TABLE churn_scores USING parquet AS
SELECT id,
       churn(age, tenure, plan, active)       AS churn,
       churn_proba(age, tenure, plan, active) AS churn_probability,
       segment(age, tenure, plan, active)     AS segment
FROM customers;

-- Churn risk by plan: NULL probabilities (a NULL feature the model can't impute) are skipped.
SELECT c.plan,
       count(*)                              AS customers,
       round(avg(s.churn_probability), 3)    AS avg_churn_probability,
       count_if(s.churn_probability IS NULL) AS unscored
FROM churn_scores s JOIN customers c USING (id)
GROUP BY c.plan
ORDER BY c.plan;
