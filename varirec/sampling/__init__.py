"""Stage 1, drawing: keyed uniform streams, sampler cfgs and samplers with listeners."""
