"""PostgreSQL engine.

``client``: what runs in the user's process (the embedded cluster, connections, install and
upgrade, upload and deploy, table scoring with progress). ``server``: only what runs inside a
backend, called by the SQL functions of schema ``ml``. ``sql/install.sql``: the schema itself.
"""
