"""Serves moto's DynamoDB API on 127.0.0.1 until standard input closes.

Prints the port it listens on as its first line (it binds port 0, so there is no race for a
free port). Requests are handled one at a time: moto does not lock across a transaction's
condition checks and writes, and DynamoDB applies every conditional write atomically, so
serialising is what makes moto a faithful stand-in for concurrency tests. Exiting when stdin
closes means the server dies with the test process that started it, however that ends.

With AWS_CALL_LOG set to a file, every request is also appended to it as one JSON line: the
caller (the `app/session-<component>` of its user agent, null for tests' own calls), the
service and operation (from X-Amz-Target), and the request parameters that name resources.
`scripts/permissions-check.sh` holds these calls against each component's IAM role.
"""

import io
import json
import logging
import os
import re
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


call_log = os.environ.get("AWS_CALL_LOG")
APP = re.compile(r"\bapp/(session-[A-Za-z0-9-]+)")
# Request parameters that name the resource a call acts on.
NAMING = ("TableName", "IndexName", "SourceTableName", "TargetTableName", "SecretId", "NamespaceName", "ServiceName")


def record(environ, body: bytes) -> None:
    """Appends the call to AWS_CALL_LOG (one write per line: whole lines even across processes)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if "." not in target:
        return
    prefix, operation = target.rsplit(".", 1)
    service = "dynamodb" if prefix.startswith("DynamoDB_") else prefix.lower()
    agent = environ.get("HTTP_X_AMZ_USER_AGENT", "") + " " + environ.get("HTTP_USER_AGENT", "")
    caller = APP.search(agent)
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        params = {}
    named = {k: params[k] for k in NAMING if k in params}
    # A transaction is authorised per item, as the item's own action on the item's table.
    items = []
    for item in params.get("TransactItems", []):
        for kind, request in item.items():
            items.append({"kind": kind, "TableName": request.get("TableName")})
    if items:
        named["TransactItems"] = items
    line = {
        "component": caller.group(1).removeprefix("session-") if caller else None,
        "service": service,
        "operation": operation,
        "params": named,
    }
    with open(call_log, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def serialised(environ, start_response):
    if call_log:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        record(environ, body)
    with lock:
        return list(app(environ, start_response))


host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
server = make_server(host, port, serialised, threaded=True)
print(server.server_port, flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
