"""The `value+logprob` policy for the LangGraph CLI; no weights load at import (the model loads on first use).

Environment: VALUEAGENT_MODEL, VALUEAGENT_AXIS, VALUEAGENT_GATE_CONFIG (see ``valueagent.agent.lazy``).
"""

from valueagent.agent.lazy import lazy_graph

graph = lazy_graph("value+logprob")
