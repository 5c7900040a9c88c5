"""The paper's published numbers (SePO, arXiv 2606.04465; as gathered in METHODS.md) and its table layout.

Accuracy in percent, mean over 5 seeds (pass@1; ARC-AGI-1 pass@3). Only what the paper states is here: for
the ablations and the model swap it gives averages (and one per-benchmark drop), not full rows.
"""

from __future__ import annotations

from harness import schema as S

CITATION = "SePO (arXiv 2606.04465)"

# benchmark registry name -> the paper's column title, in the paper's column order
BENCHMARKS = {"aime": "AIME'25", "arc": "ARC-AGI-1", "gpqa": "GPQA", "mbpp": "MBPP", "sudoku": "Sudoku"}
AVERAGE = "avg"

# Table 1: rows in the paper's order
TABLE1_METHODS = ("manual-cot", "textgrad", "metaspo", "sepo-specialist", "sepo-generalist")
TABLE1: dict[str, dict[str, float]] = {
    "manual-cot": {"aime": 57.55, "arc": 37.30, "gpqa": 76.46, "mbpp": 91.20, "sudoku": 96.95, "avg": 71.89},
    "textgrad": {"aime": 55.99, "arc": 34.75, "gpqa": 74.44, "mbpp": 90.15, "sudoku": 96.60, "avg": 70.39},
    "metaspo": {"aime": 57.71, "arc": 37.27, "gpqa": 75.51, "mbpp": 89.30, "sudoku": 96.80, "avg": 71.32},
    "sepo-specialist": {"aime": 60.94, "arc": 37.46, "gpqa": 76.72, "mbpp": 95.55, "sudoku": 99.80, "avg": 74.09},
    "sepo-generalist": {"aime": 64.22, "arc": 43.39, "gpqa": 78.18, "mbpp": 96.20, "sudoku": 99.90, "avg": 76.38},
}

# Table 2: the ablations of SePO-Generalist. The paper gives their averages and, for no-archive, the drop on
# AIME (-6.98 from 64.22, i.e. 57.24); the other cells are not published.
TABLE2_METHODS = ("sepo-generalist", "sepo-no-self-improve", "sepo-no-archive")
TABLE2: dict[str, dict[str, float]] = {
    "sepo-generalist": TABLE1["sepo-generalist"],
    "sepo-no-self-improve": {"avg": 74.94},
    "sepo-no-archive": {"avg": 72.64, "aime": round(64.22 - 6.98, 2)},
}

# The model-swap experiment (Gemini 3.1 Flash-Lite task agent, Claude Opus 4.6 prompt agent): the paper gives
# the average only, 67.95 -> 70.08. METHODS.md does not name the two ends; read by analogy with its Sudoku
# generalization figure (Manual-CoT 96.95 -> SePO-Generalist 99.90) as Manual-CoT -> SePO-Generalist.
SWAP_MODELS = "Gemini 3.1 Flash-Lite (task agent), Claude Opus 4.6 (prompt agent)"
SWAP: dict[str, dict[str, float]] = {"manual-cot": {"avg": 67.95}, "sepo-generalist": {"avg": 70.08}}

# Cost as the paper reports it (dollars).
COST = {"pretrain_once": 37.0, "finetune_per_task": (2.41, 15.51), "textgrad_per_task": (14.75, 26.52)}
COST_NOTE = ("The paper: pre-training about $37 once; fine-tuning $2.41-15.51 per task; TextGrad "
             "$14.75-26.52 per task.")


def reference(protocol: str | None) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(Table 1 numbers, Table 2 numbers) the paper reports for a protocol ("paper", "paper-swap"), else empty."""
    if protocol == S.PROTOCOL_PAPER:
        return TABLE1, TABLE2
    if protocol == S.PROTOCOL_SWAP:
        return SWAP, {"sepo-generalist": SWAP["sepo-generalist"]}
    return {}, {}
