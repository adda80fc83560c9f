"""Deploys and rollbacks on Kubernetes (issue 6): config, the DeployService state machine,
strategies (rolling, blue-green, canary), verification and post-mortems. See the README's Deploys section.

Importing this package does not import the `kubernetes` client (the adapter loads it lazily)."""

from tasks.deploy.config import ConfigError, EnvironmentConfig, parse_environments
from tasks.deploy.model import (
                                DeployError,
                                DeployLocked,
                                DeployNotFound,
                                DeployRecord,
                                DeployRequest,
                                EnvStatus,
                                NullReporter,
                                Reporter,
                                RollbackRequest,
                                Step,
)
from tasks.deploy.service import DeployService

__all__ = [
    "ConfigError", "DeployError", "DeployLocked", "DeployNotFound", "DeployRecord", "DeployRequest",
    "DeployService", "EnvStatus", "EnvironmentConfig", "NullReporter", "Reporter", "RollbackRequest",
    "Step", "parse_environments",
]
