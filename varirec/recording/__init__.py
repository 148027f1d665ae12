"""Stage 3, recording: episode tracking, the variation recorder, terms, lifecycle managers."""
