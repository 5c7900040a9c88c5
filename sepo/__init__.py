"""SePO: self-evolving prompt optimization (prompt agent, archive, evolution loop, two stages, p~* artifacts)."""

from sepo.agent import PromptAgent, Proposal, initial_prompt_agent
from sepo.archive import Archive, Entry
from sepo.evolve import CheckpointMismatch, EvolveSettings, evolve
from sepo.optimizer import SePO, SePOSettings

__all__ = ["Archive", "CheckpointMismatch", "Entry", "EvolveSettings", "PromptAgent", "Proposal", "SePO",
           "SePOSettings", "evolve", "initial_prompt_agent"]
