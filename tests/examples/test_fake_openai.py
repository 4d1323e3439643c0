"""The fake OpenAI-compatible model of the research agent: its admin endpoint changes
how it streams, as docs/research_agent.md says."""

from __future__ import annotations

import httpx

from examples.fake_openai import FakeModel


def test_the_pause_between_streamed_words_is_set_over_http() -> None:
    with FakeModel() as fake:
        admin = fake.url.removesuffix("/v1")
        answer = httpx.post(f"{admin}/admin/faults", json={"token_delay_s": 0.25})
        assert answer.status_code == 204, answer.text
        assert fake.token_delay_s == 0.25
        streamed = httpx.post(
            f"{fake.url}/chat/completions",
            json={"model": "fake", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
