#!/bin/sh
# Container entry point: exec, so the server is PID 1's process and receives SIGTERM itself
# (it drains in-flight requests before exiting; see server.py).
set -e
exec python app.py "$@"
