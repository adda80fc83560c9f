"""ChatOps: commands in comments and label triggers, with permissions and gates per environment."""
