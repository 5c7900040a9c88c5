"""SePO: self-evolving prompt optimization (prompt agent, archive, evolution loop, two stages)."""

from sepo.agent import PromptAgent, initial_prompt_agent
from sepo.archive import Archive, Entry
from sepo.evolve import EvolveSettings, evolve
from sepo.optimizer import SePO, SePOSettings, load_prompt_agent, save_prompt_agent

__all__ = ["Archive", "Entry", "EvolveSettings", "PromptAgent", "SePO", "SePOSettings", "evolve",
           "initial_prompt_agent", "load_prompt_agent", "save_prompt_agent"]
