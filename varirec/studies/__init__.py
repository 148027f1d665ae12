"""Stage 5, studies: designs bound through apply_cfg, schedules, the study driver, replay."""
