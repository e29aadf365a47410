-- Which version is live, and going back to the previous one (ml_admin only).
SELECT DISTINCT ON (name) name, version AS live_version, deployed_at, deployed_by
FROM ml.deployments
ORDER BY name, id DESC;

SELECT ml.rollback('churn');

-- Every open connection uses the rolled-back version from its next statement on.
SELECT name, version, action, deployed_at FROM ml.deployments WHERE name = 'churn' ORDER BY id;
