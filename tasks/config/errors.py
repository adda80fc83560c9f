"""The one error for configuration that cannot be used: settings, the YAML file, environments.

A ValueError, so callers that already treat a bad value as a ValueError keep working. The
message names the variable, or the file, line and field, and never a secret's value.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting or a configuration file is missing or malformed; the message says where."""
