"""`Scope(domain=…)` on an agent driven by a pydantic-ai FunctionModel adds no hidden call."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import tether
from tether import Agent, Scope, Sequential, tool


class Profile(BaseModel):
    name: str


async def test_a_function_model_is_asked_only_what_its_agent_asks(sqlite_url: str) -> None:
    seen: list[int] = []

    @tool(risk="read")
    async def search_company(name: str) -> dict[str, str]:
        return {"name": name}

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(len(messages))
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("search_company", {"name": "acme"})])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"name": "acme"})])

    researcher = Agent(
        name="researcher",
        model=FunctionModel(answer),
        instructions="Research {company}.",
        tools=[search_company],
        output_type=Profile,
        scope=Scope(domain="B2B sales research"),
    )
    app = tether.App(sqlite_url)
    app.register(Sequential("research", [researcher]))
    info = await app.run_async("research", {"company": "acme"})
    assert info.status == "succeeded", info.error
    assert info.output == {"researcher": {"name": "acme"}}
    assert seen == [1, 3]  # the agent's two requests, no classifier request in between
