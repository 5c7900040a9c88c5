"""Baselines with the same Optimizer interface as SePO (Manual-CoT, TextGrad, MetaSPO, E-SPL, GEPA): not built yet."""
