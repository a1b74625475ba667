"""The app of the rate-limit end-to-end test: an agent whose model is the fake provider named
by ``$RATE_PROVIDER_URL``, under a provider-wide rate limit."""

from __future__ import annotations

import os
from datetime import timedelta

from openai import AsyncOpenAI
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import tether
from tether import Agent, Retry

client = AsyncOpenAI(base_url=os.environ.get("RATE_PROVIDER_URL", "http://127.0.0.1:9/v1"),
                     api_key="test-key", max_retries=0)
model = OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(openai_client=client))

app = tether.App()
app.rate_limit("openai:*", requests=5, per=timedelta(seconds=3))
# No retries: a 429 would fail its run, so a run that succeeded was never refused.
app.register(Agent("writer", model, "Write one line.", retry=Retry(max_attempts=1)))
