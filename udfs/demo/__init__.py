"""The demo: generated feature tables, demo models and the end-to-end `udfs demo` job."""
