"""Serves moto's DynamoDB API on 127.0.0.1 until standard input closes.

Prints the port it listens on as its first line (it binds port 0, so there is no race for a
free port). Requests are handled one at a time: moto does not lock across a transaction's
condition checks and writes, and DynamoDB applies every conditional write atomically, so
serialising is what makes moto a faithful stand-in for concurrency tests. Exiting when stdin
closes means the server dies with the test process that started it, however that ends.
"""

import logging
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialised(environ, start_response):
    with lock:
        return list(app(environ, start_response))


host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
server = make_server(host, port, serialised, threaded=True)
print(server.server_port, flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
