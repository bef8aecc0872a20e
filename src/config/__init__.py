"""Settings: the schema of every constant (schema.py), reading them from recipes and the command line
(parsing.py), and the rules about runs that follow from them (policy.py). Imports only errors and labels."""
