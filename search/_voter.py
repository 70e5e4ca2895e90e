"""Where model directories written before the voting room existed find their voter class (pickle)."""

from emotune.search.vote._voter import SoftVoter

__all__ = ["SoftVoter"]
