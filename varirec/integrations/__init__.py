"""Stage 6, integrations: Gymnasium wrappers and vector envs, the env builder."""
