"""The client side of the PostgreSQL engine: what runs in the user's process, over psycopg2."""
