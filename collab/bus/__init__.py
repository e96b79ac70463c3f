"""The bus between collab processes that share one store (see `contract`)."""

from collab.bus.contract import Bus, BusListener
from collab.bus.memory import MemoryBus, MemoryNetwork

__all__ = ["Bus", "BusListener", "MemoryBus", "MemoryNetwork"]
