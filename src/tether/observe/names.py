"""Span names and attribute keys: the OpenTelemetry GenAI conventions, kept as our own constants.

Upper layers record these keys in a journal entry's ``meta`` (see `StepContext.set_meta`);
spans, stats, cost attribution and change detection read them back from the journal. One
vocabulary from the model call to the dashboard.
"""

from __future__ import annotations

# --- span names (formatted with the agent, model or tool name) --------------------------------
SPAN_WORKFLOW = "invoke_workflow {name}"
SPAN_AGENT = "invoke_agent {name}"
SPAN_CHAT = "chat {model}"
SPAN_TOOL = "execute_tool {name}"
SPAN_STEP = "step {name}"
SPAN_WAIT = "wait {name}"

# --- OpenTelemetry GenAI attributes ---------------------------------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
"""``chat``, ``execute_tool``, ``invoke_agent``, ``invoke_workflow``."""
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"

# --- tether's own ---------------------------------------------------------------------------------
RUN_ID = "tether.run.id"
WORKFLOW = "tether.workflow"
NODE = "tether.node"
"""The pipeline node (agent name) a step belongs to."""
ATTEMPT = "tether.attempt"
COST_USD = "tether.cost.usd"
PRICE_SOURCE = "tether.cost.source"
"""``genai-prices <version>``, ``override`` or ``unpriced``."""
UNPRICED = "tether.cost.unpriced"
PROMPT_HASH = "tether.prompt.hash"
"""Hash of the instructions (the prompt version)."""
TOOLS_HASH = "tether.tools.hash"
"""Hash of the tool schemas offered to the model."""
APP_VERSION = "tether.app.version"
RISK = "tether.tool.risk"
WAITING_FOR_HUMAN = "tether.wait.human"

# operation names
OP_CHAT = "chat"
OP_TOOL = "execute_tool"
OP_AGENT = "invoke_agent"
OP_WORKFLOW = "invoke_workflow"
