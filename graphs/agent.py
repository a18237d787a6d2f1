"""Every registered policy in one graph for the LangGraph CLI: the policy is picked per run with
``config={"configurable": {"policy": "value-seq"}}`` (default ``value``), plugins' policies included
(``VALUEAGENT_PLUGINS``). No weights load at import (the model loads on first use).

Environment: VALUEAGENT_MODEL, VALUEAGENT_AXIS, VALUEAGENT_GATE_CONFIG (see ``valueagent.agent.lazy``).
"""

from valueagent.agent.lazy import configurable_graph

graph = configurable_graph()
