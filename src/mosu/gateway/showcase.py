"""The public showcase, served by the gateway without sign-in: residents' models that are
public and approved by the operator, with the company, description and live status, and
a try-it chat that streams through the operator's showcase key (``mosu key create
--showcase``), whose low limits keep visitors from exhausting a company's capacity.

Every try-it call is kept as an audit record (time, model, sizes, status); the prompt
only when the service's spec says ``audit_prompts: true``. A withdrawn model leaves the
page and refuses try-it calls within one route refresh."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from mosu.gateway.proxy import Gateway, OpenAIError, _send
from mosu.gateway.routing import Route
from mosu.service.db.gateway_rows import ShowcaseAuditRow

MAX_MESSAGE_CHARS = 2000
MAX_ANSWER_TOKENS = 48
"""A visitor's answer is kept short: the showcase is a taste, not free capacity."""


def public_routes(gateway: Gateway) -> list[Route]:
    return sorted(
        (r for r in gateway.table.routes.values() if r.public), key=lambda r: (r.tenant, r.model)
    )


def _status(route: Route) -> str:
    ready = len(route.replicas)
    if ready:
        return f"live · {ready} replica{'s' if ready != 1 else ''}"
    return "starts on first message" if route.min_replicas == 0 else "starting"


def models_json(gateway: Gateway) -> list[dict[str, Any]]:
    return [
        {
            "model": r.model,
            "company": r.tenant,
            "description": r.description,
            "ready": len(r.replicas),
            "status": _status(r),
        }
        for r in public_routes(gateway)
    ]


def render_page(gateway: Gateway) -> bytes:
    cards = []
    for m in models_json(gateway):
        model = html.escape(m["model"])
        cards.append(
            f"""<section class="card" data-model="{model}">
  <header><h2>{model}</h2><span class="company">{html.escape(m["company"])}</span>
  <span class="status" data-status>{html.escape(m["status"])}</span></header>
  <p class="description">{html.escape(m["description"]) or "&nbsp;"}</p>
  <div class="chat" data-chat></div>
  <form data-try><input name="message" maxlength="{MAX_MESSAGE_CHARS}"
    placeholder="Say something to {model}" autocomplete="off" required>
  <button type="submit">Send</button></form>
</section>"""
        )
    body = "\n".join(cards) or '<p class="empty">No models are on show yet.</p>'
    page = PAGE.replace("{{cards}}", body)
    return page.encode()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mosu showcase</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}
.lead{color:#5b6475;margin:0 0 20px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px}
.card{background:#fff;border:1px solid #dfe3ea;border-radius:10px;padding:16px;display:flex;
  flex-direction:column;gap:8px}
.card header{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline}
.card h2{font-size:17px;margin:0}
.company{color:#5b6475}
.status{margin-left:auto;font-size:12px;background:#e8f5ec;color:#1d6b36;border-radius:10px;
  padding:1px 8px}
.description{margin:0;color:#333a47}
.chat{min-height:60px;max-height:220px;overflow:auto;background:#f3f5f8;border-radius:6px;
  padding:8px;font-size:14px;white-space:pre-wrap}
.chat .you{color:#5b6475}
.chat .error{color:#a3262a}
form{display:flex;gap:6px}
input{flex:1;padding:6px 8px;border:1px solid #c9cfd9;border-radius:6px}
button{padding:6px 12px;border:0;border-radius:6px;background:#2456d6;color:#fff}
.empty{color:#5b6475}
</style></head>
<body><main>
<h1>Model showcase</h1>
<p class="lead">Models built by the incubator's companies. Try them: answers stream live
from the companies' own replicas.</p>
<div class="grid">
{{cards}}
</div>
</main>
<script>
for (const card of document.querySelectorAll('[data-model]')) {
  const model = card.dataset.model, chat = card.querySelector('[data-chat]');
  card.querySelector('[data-try]').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = ev.target.elements.message, text = input.value.trim();
    if (!text) return;
    input.value = '';
    const you = document.createElement('div'); you.className = 'you';
    you.textContent = '> ' + text; chat.append(you);
    const out = document.createElement('div'); out.className = 'answer'; chat.append(out);
    const reply = await fetch('/showcase/chat', {method: 'POST',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify({model: model, message: text})});
    if (!reply.ok) {
      let message = reply.statusText;
      try { message = (await reply.json()).error.message; } catch (e) {}
      out.className = 'error'; out.textContent = message; return;
    }
    const reader = reply.body.getReader(), decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      const lines = buffer.split('\\n'); buffer = lines.pop();
      for (const line of lines) {
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
        try {
          const delta = JSON.parse(line.slice(6)).choices[0].delta.content;
          if (delta) { out.textContent += delta; chat.scrollTop = chat.scrollHeight; }
        } catch (e) {}
      }
    }
    out.dataset.done = '1';
  });
}
setInterval(async () => {
  try {
    const models = await (await fetch('/showcase/models.json')).json();
    for (const m of models) {
      const card = document.querySelector(`[data-model="${CSS.escape(m.model)}"]`);
      if (card) card.querySelector('[data-status]').textContent = m.status;
    }
  } catch (e) {}
}, 5000);
</script>
</body></html>
"""


class Showcase:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.audit: list[ShowcaseAuditRow] = []

    async def page(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _send(
            send,
            200,
            render_page(self.gateway),
            [(b"cache-control", b"no-store"), *SECURITY_HEADERS],
            content_type=b"text/html; charset=utf-8",
        )

    async def models(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _send(send, 200, json.dumps(models_json(self.gateway)).encode())

    async def chat(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A visitor's message, as a streamed chat completion under the showcase key."""
        gateway = self.gateway
        try:
            raw = await _read(receive, 16 * 1024)
            try:
                body = json.loads(raw)
            except ValueError:
                raise OpenAIError(400, "the body is not valid JSON", code="malformed") from None
            if not isinstance(body, dict):
                raise OpenAIError(400, "the body must be a JSON object", code="malformed")
            model, message = body.get("model"), body.get("message")
            if not isinstance(model, str) or not isinstance(message, str) or not message.strip():
                raise OpenAIError(400, "model and message are required", code="malformed")
            if len(message) > MAX_MESSAGE_CHARS:
                raise OpenAIError(413, f"at most {MAX_MESSAGE_CHARS} characters", code="too_large")
            digest = gateway.table.showcase_key
            key = gateway.table.keys.get(digest) if digest else None
            if key is None:
                raise OpenAIError(503, "the showcase is closed for now", code="closed")
            request = {
                "model": model,
                "messages": [{"role": "user", "content": message}],
                "stream": True,
                "max_tokens": MAX_ANSWER_TOKENS,
            }
            payload = json.dumps(request).encode()
            await gateway.serve_payload(key, model, "/v1/chat/completions", payload, request, send)
        except OpenAIError as exc:
            await _send(send, exc.status, exc.body(), exc.headers)
            self.record(model if isinstance(model, str) else "", exc.status, 0, 0, None)

    def record(
        self, model: str, status: int, request_bytes: int, response_bytes: int, prompt: str | None
    ) -> None:
        self.audit.append(
            ShowcaseAuditRow(
                at=time.time(),
                model=model[:128],
                status=status,
                request_bytes=request_bytes,
                response_bytes=response_bytes,
                prompt=prompt,
            )
        )

    def on_audit(
        self, route: Route, status: int, req: int, resp: int, payload: dict[str, Any]
    ) -> None:
        prompt = None
        if route.audit_prompts:
            messages = payload.get("messages") or []
            prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))[
                :MAX_MESSAGE_CHARS
            ]
        self.record(route.model, status, req, resp, prompt)

    def flush(self) -> Callable[[Session], None]:
        """Take the records (on the loop that adds them); the writer stores them."""
        batch, self.audit = self.audit, []
        return lambda session: session.add_all(batch)


SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


async def _read(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise OpenAIError(413, f"the body is over {limit} bytes", code="too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def mount_showcase(gateway: Gateway) -> Showcase:
    showcase = Showcase(gateway)
    gateway.extra_routes[("GET", "/showcase")] = showcase.page
    gateway.extra_routes[("GET", "/")] = showcase.page
    gateway.extra_routes[("GET", "/showcase/models.json")] = showcase.models
    gateway.extra_routes[("POST", "/showcase/chat")] = showcase.chat
    gateway.on_audit = showcase.on_audit
    gateway.flush_hooks.append(showcase.flush)
    return showcase
