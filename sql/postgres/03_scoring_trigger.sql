-- Score rows as they arrive.
DROP TABLE IF EXISTS new_customers;
CREATE TABLE new_customers (LIKE customers INCLUDING ALL);
ALTER TABLE new_customers ADD COLUMN churn bigint;

-- 'row': a BEFORE INSERT OR UPDATE trigger, for trickles of rows.
SELECT ml.attach_scoring_trigger('new_customers', 'churn', 'churn');
INSERT INTO new_customers (id, age, tenure, plan, active) VALUES (1, 41.5, 12, 'pro', true);

-- 'statement': one vectorized call per INSERT or COPY, written back by primary key.
-- The write-back is an UPDATE of every inserted row; attach sets the table's fillfactor to 45
-- so those updates are HOT (no new index entries). fillfactor => NULL leaves the table alone.
-- on_error => 'null' keeps rows the model cannot score, with a NULL score and a row in
-- ml.scoring_errors.
SELECT ml.attach_scoring_trigger('new_customers', 'churn', 'churn',
                                 mode => 'statement', on_error => 'null');
INSERT INTO new_customers (id, age, tenure, plan, active)
SELECT id + 1000, age, tenure, plan, active FROM customers;

SELECT count(*) AS rows, count(churn) AS scored FROM new_customers;
SELECT table_name, key, model, version, error FROM ml.scoring_errors ORDER BY id DESC LIMIT 5;

SELECT ml.detach_scoring_trigger('new_customers', 'churn');
