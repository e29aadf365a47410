"""The server side of the PostgreSQL engine: only what runs inside a backend (PL/Python).

It imports the udfs core and numpy, never psycopg2; ``entry`` holds what the SQL calls.
"""
