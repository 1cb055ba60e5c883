"""Typed keys for everything the aiohttp application holds."""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from opentelemetry.trace import Tracer

from bot.backends.base import ModelBackend
from bot.conversation import Conversation
from bot.delivery.base import InboundQueue
from bot.delivery.worker import DeliveryWorkers
from bot.health import Readiness
from bot.intake import Intake
from bot.platforms.base import GroupRobot, PlatformAdapter
from bot.sessions.base import SessionStore
from bot.settings import Settings
from bot.telemetry.metrics import BotMetrics
from servicekit.logs import AccessLog

settings_key = web.AppKey("settings", Settings)
metrics_key = web.AppKey("metrics", BotMetrics)
tracer_key = web.AppKey("tracer", Tracer)
http_client_key = web.AppKey("http_client", aiohttp.ClientSession)
# The process's one Redis client (one connection pool), present when REDIS_URL is set.
redis_key: web.AppKey[aioredis.Redis] = web.AppKey("redis")
model_http_client_key = web.AppKey("model_http_client", aiohttp.ClientSession)
sessions_key = web.AppKey("sessions", SessionStore)
backend_key = web.AppKey("backend", ModelBackend)
conversation_key = web.AppKey("conversation", Conversation)
readiness_key = web.AppKey("readiness", Readiness)
started_at_key = web.AppKey("started_at", float)
route_platforms_key = web.AppKey("route_platforms", dict)
access_log_key = web.AppKey("access_log", AccessLog)
queue_key = web.AppKey("queue", InboundQueue)
adapters_key = web.AppKey("adapters", dict[str, PlatformAdapter])
intake_key = web.AppKey("intake", Intake)
alert_sink_key: web.AppKey[GroupRobot] = web.AppKey("alert_sink")
workers_key = web.AppKey("workers", DeliveryWorkers)

request_id_key = web.RequestKey("request_id", str)
client_ip_key = web.RequestKey("client_ip", str)
