"""Credentials out of error texts: what a platform or robot API says goes through here before anyone sees it.

APIs echo the URL they were called with (a group robot's `access_token`, a WeCom `key`, a
Telegram bot token in the path) or the request's own fields. `DeliveryFailed` runs every reason
through `scrub_credentials`, so a 502 body, a log line and a dead letter all carry the same
scrubbed text.
"""

from __future__ import annotations

import re

MASK = "***"
# Names whose values are secrets wherever they appear: query strings, form fields, JSON, key=value prose.
_SECRET_NAMES = (
    r"access_token|accesstoken|token|tenant_access_token|app_access_token|refresh_token|key|api_key|apikey|"
    r"secret|app_secret|appsecret|client_secret|corpsecret|sign|signature|password|passwd|pwd|ticket|credentials?"
)
_PATTERNS = (
    # name=value in URLs and prose (access_token=..., key=..., &sign=...)
    (re.compile(rf"(?i)\b({_SECRET_NAMES})=([^&\s\"',;)]+)"), rf"\1={MASK}"),
    # "name": "value" in JSON echoed back
    (re.compile(rf"(?i)(\"(?:{_SECRET_NAMES})\"\s*:\s*\")([^\"]*)(\")"), rf"\1{MASK}\3"),
    # user:password@ in URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), rf"\1{MASK}@"),
    # Authorization values
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {MASK}"),
    # Telegram bot tokens in API paths (/bot123456:ABC.../sendMessage)
    (re.compile(r"/bot\d+:[A-Za-z0-9_-]+"), f"/bot{MASK}"),
    # Webhook URLs whose path is the secret (Feishu, Slack)
    (re.compile(r"(/open-apis/bot/v2/hook/)[^/\s?\"']+"), rf"\1{MASK}"),
    (re.compile(r"(hooks\.slack\.com/services/)[^\s?\"']+"), rf"\1{MASK}"),
)


def scrub_credentials(text: str) -> str:
    """`text` with every credential-looking value replaced by ***."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
