"""One typed configuration: the environment (settings) and the YAML file (agent), both
validated at start-up with errors naming the file, line and field.
"""
