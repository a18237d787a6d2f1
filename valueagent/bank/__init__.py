"""A replayable sample bank: per task a greedy answer and N fresh samples with their per-token readings
and test verdicts, so whole-answer policies (rank, sequential gate, early stop) are scored exactly and
paired, in seconds, without running the model again."""

from valueagent.bank.store import Bank, BankError, BankManifest, load_bank

__all__ = ["Bank", "BankError", "BankManifest", "load_bank"]
