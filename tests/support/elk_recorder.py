"""Local HTTP servers that record what `setup_elk` sends to Elasticsearch and Kibana and answer as
their documented APIs do (the product header the Elasticsearch client insists on, Kibana's refusal of a
write without `kbn-xsrf`, the import response). They prove the calls, not Elasticsearch or Kibana."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from aiohttp import web

ES_HEADERS = {"X-Elastic-Product": "Elasticsearch"}


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def line(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.query.items()))
        return f"{self.method} {self.path}{'?' + query if query else ''}"

    def json(self) -> Any:
        return json.loads(self.body)

    def upload(self) -> tuple[str | None, bytes]:
        """(filename, content) of the single file in a multipart/form-data body."""
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers.get('content-type', '')}\r\n\r\n".encode() + self.body
        )
        (part,) = [p for p in message.iter_parts() if p.get_filename()]
        return part.get_filename(), part.get_payload(decode=True)


@dataclass
class ElkRecorder:
    """Both services' calls in arrival order, and the state an install leaves (policies, templates, objects)."""

    calls: list[Call] = field(default_factory=list)
    not_ready: dict[str, int] = field(default_factory=lambda: {"elasticsearch": 0, "kibana": 0})
    refuse_template: str | None = None
    # Service -> the Authorization header it requires; any other request is answered 401.
    required_auth: dict[str, str] = field(default_factory=dict)
    import_errors: list[dict[str, Any]] = field(default_factory=list)
    policies: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, Any] = field(default_factory=dict)
    saved_objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def elasticsearch(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._elasticsearch)
        return app

    def kibana(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._kibana)
        return app

    async def _record(self, service: str, request: web.Request) -> Call:
        call = Call(service, request.method, request.path, dict(request.query),
                    {k.lower(): v for k, v in request.headers.items()}, await request.read())
        self.calls.append(call)
        return call

    def _unready(self, service: str) -> bool:
        if self.not_ready[service] > 0:
            self.not_ready[service] -= 1
            return True
        return False

    def _unauthorized(self, call: Call) -> bool:
        required = self.required_auth.get(call.service)
        return required is not None and call.headers.get("authorization") != required

    async def _elasticsearch(self, request: web.Request) -> web.Response:
        call = await self._record("elasticsearch", request)
        if self._unauthorized(call):
            error = {"type": "security_exception", "reason": "unable to authenticate user [elastic] for REST request"}
            return web.json_response({"error": error, "status": 401}, status=401, headers=ES_HEADERS)
        if call.method == "GET" and call.path == "/_cluster/health":
            if self._unready("elasticsearch"):
                return web.json_response({"status": "red", "timed_out": True}, status=408, headers=ES_HEADERS)
            return web.json_response({"cluster_name": "recorder", "status": "green", "timed_out": False}, headers=ES_HEADERS)
        kind, _, name = call.path.lstrip("/").partition("/")
        if call.method == "PUT" and kind == "_ilm" and name.startswith("policy/"):
            self.policies[name.removeprefix("policy/")] = call.json()
            return web.json_response({"acknowledged": True}, headers=ES_HEADERS)
        if call.method == "PUT" and kind == "_index_template":
            if self.refuse_template:
                error = {"type": "mapper_parsing_exception", "reason": self.refuse_template}
                return web.json_response({"error": {**error, "root_cause": [error]}, "status": 400}, status=400, headers=ES_HEADERS)
            self.templates[name] = call.json()
            return web.json_response({"acknowledged": True}, headers=ES_HEADERS)
        error = {"type": "no_handler_found_exception", "reason": f"no handler found for uri [{call.path}] and method [{call.method}]"}
        return web.json_response({"error": error, "status": 400}, status=400, headers=ES_HEADERS)

    async def _kibana(self, request: web.Request) -> web.Response:
        call = await self._record("kibana", request)
        if self._unauthorized(call):
            return web.json_response({"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"}, status=401)
        if call.method == "GET" and call.path == "/api/status":
            if self._unready("kibana"):
                return web.json_response({"status": {"overall": {"level": "unavailable"}}}, status=503)
            return web.json_response({"status": {"overall": {"level": "available"}}})
        if call.method == "POST" and call.path == "/api/saved_objects/_import":
            if "kbn-xsrf" not in call.headers:
                return web.json_response(
                    {"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."},
                    status=400,
                )
            _, content = call.upload()
            objects = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
            if self.import_errors:
                return web.json_response({"success": False, "successCount": 0, "errors": self.import_errors})
            overwrite = call.query.get("overwrite") == "true"
            conflicts = [o for o in objects if (o["type"], o["id"]) in self.saved_objects and not overwrite]
            if conflicts:
                errors = [{"id": o["id"], "type": o["type"], "error": {"type": "conflict"}} for o in conflicts]
                return web.json_response({"success": False, "successCount": len(objects) - len(conflicts), "errors": errors})
            for obj in objects:
                self.saved_objects[(obj["type"], obj["id"])] = obj
            results = [{"type": o["type"], "id": o["id"], **({"overwrite": True} if overwrite else {})} for o in objects]
            return web.json_response({"success": True, "successCount": len(objects), "successResults": results})
        return web.json_response({"statusCode": 404, "error": "Not Found", "message": "Not Found"}, status=404)
